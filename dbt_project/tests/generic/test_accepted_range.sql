{#- Every non-null value lies within [min_value, max_value] (either bound optional).
    A bound may come from a var rendered in YAML, so it is text by then: it must read as
    a number, or the test fails to compile naming it; no other text reaches SQL. -#}
{% test accepted_range(model, column_name, min_value=none, max_value=none) %}

{%- for bound in [min_value, max_value] if bound is not none -%}
    {%- if not modules.re.fullmatch('-?[0-9]+([.][0-9]+)?([eE][-+]?[0-9]+)?', bound | string) -%}
        {{ exceptions.raise_compiler_error(
            "accepted_range on " ~ column_name ~ ": a bound must be a number, got '"
            ~ bound ~ "'"
        ) }}
    {%- endif -%}
{%- endfor %}

select {{ column_name }} as out_of_range
from {{ model }}
where
    1 = 0
    {%- if min_value is not none %}
        or {{ column_name }} < {{ min_value }}
    {%- endif %}
    {%- if max_value is not none %}
        or {{ column_name }} > {{ max_value }}
    {%- endif %}

{% endtest %}
