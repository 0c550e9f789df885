{#- Use the folder's schema name as it is (raw, staging, intermediate, marts), not
    dbt's default "<target schema>_<custom schema>": BI tools and the Python assets
    address these schemas by name. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
