{#- Every row satisfies a SQL expression (a model-level test). -#}
{% test expression_is_true(model, expression) %}

select *
from {{ model }}
where not ({{ expression }})

{% endtest %}
