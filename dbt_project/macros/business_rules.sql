{#- The as-of date of customer features: var('as_of'), else the day after the last
    loaded invoice. Every customer feature uses only lines strictly before it. -#}
{% macro as_of_date() -%}
    {%- if var('as_of', none) -%}
        cast('{{ date_var('as_of') }}' as date)
    {%- else -%}
        (
            select cast(max(invoice_at) as date) + 1
            from {{ ref('stg_online_retail__transactions') }}
        )
    {%- endif -%}
{%- endmacro %}

{#- The guest policy var, checked: a typo must fail the build, not change the answer. -#}
{% macro guest_policy() -%}
    {%- set policy = var('guest_policy', 'exclude') -%}
    {%- if policy not in ['exclude', 'per_invoice'] -%}
        {{ exceptions.raise_compiler_error(
            "var guest_policy must be 'exclude' or 'per_invoice', got '" ~ policy ~ "'"
        ) }}
    {%- endif -%}
    {{- return(policy) -}}
{%- endmacro %}

{#- A quintile score from 1 to 5, 5 being best. Ties share a score (the bucket of
    their first rank), so the score never depends on row order. partition_by scores
    within each value of that column (each evaluation date). -#}
{% macro rfm_score(column, higher_is_better=true, partition_by=none) -%}
    {%- set window = ('partition by ' ~ partition_by ~ ' ') if partition_by else '' -%}
    cast(
        1 + floor(
            5.0 * (
                rank() over ({{ window }}order by {{ column }} {{ 'asc' if higher_is_better else 'desc' }})
                - 1
            )
            / count(*) over ({{ window }})
        ) as integer
    )
{%- endmacro %}

{#- A numeric var, checked where it enters: a number (an integer where asked), at least
    ``minimum``; anything else fails the build naming the var, so no text reaches SQL. -#}
{% macro number_var(name, integer=false, minimum=none) -%}
    {%- set value = var(name) -%}
    {%- set kind = "an integer" if integer else "a number" -%}
    {%- set bound = (" >= " ~ minimum) if minimum is not none else "" -%}
    {%- set is_bool = value is sameas true or value is sameas false -%}
    {%- set is_number = value is number and not is_bool -%}
    {%- set ok = is_number and (value is integer or not integer) -%}
    {%- if not ok or (minimum is not none and value < minimum) -%}
        {%- set message = "var " ~ name ~ " must be " ~ kind ~ bound -%}
        {{ exceptions.raise_compiler_error(message ~ ", got '" ~ value ~ "'") }}
    {%- endif -%}
    {{- value -}}
{%- endmacro %}

{#- A date var (YYYY-MM-DD), checked where it enters: anything else fails the build
    naming the var, so no text reaches SQL. -#}
{% macro date_var(name) -%}
    {%- set value = var(name) | string -%}
    {%- set shaped = value | length == 10 and value[4:5] ~ value[7:8] == '--' -%}
    {%- if not shaped or not value.replace('-', '').isdigit() -%}
        {%- set message = "var " ~ name ~ " must be a date YYYY-MM-DD" -%}
        {{ exceptions.raise_compiler_error(message ~ ", got '" ~ value ~ "'") }}
    {%- endif -%}
    {{- value -}}
{%- endmacro %}
