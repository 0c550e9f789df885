{#- The as-of date of customer features: var('as_of'), else the day after the last
    loaded invoice. Every customer feature uses only lines strictly before it. -#}
{% macro as_of_date() -%}
    {%- if var('as_of', none) -%}
        cast('{{ var("as_of") }}' as date)
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
