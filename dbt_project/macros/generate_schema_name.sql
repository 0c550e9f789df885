{#- dbt's convention (generate_schema_name_for_env), keyed on the target's name:
    - production targets (every target but `dev*`) use the folder's schema name as it
      is (raw, staging, intermediate, marts, insiders): BI tools and the Python assets
      address these schemas by name;
    - a developer's target (`--target dev`, see profiles/profiles.yml) prefixes it with
      the target's own schema (`dev_alice_marts`), so a developer's build never
      overwrites production tables, even in a shared database. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- elif target.name.startswith('dev') -%}
        {{ target.schema }}_{{ custom_schema_name | trim }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
