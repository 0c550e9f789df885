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
    {%- set message = "var " ~ name ~ " must be a date YYYY-MM-DD" -%}
    {%- set shaped = value | length == 10 and value[4:5] ~ value[7:8] == '--' -%}
    {%- if not shaped or not value.replace('-', '').isdigit() -%}
        {{ exceptions.raise_compiler_error(message ~ ", got '" ~ value ~ "'") }}
    {%- endif -%}
    {#- A day that exists: 2011-02-30 is refused here, not by a cast deep in SQL. -#}
    {%- set year = value[0:4] | int -%}
    {%- set month = value[5:7] | int -%}
    {%- set day = value[8:10] | int -%}
    {%- set leap = (year % 4 == 0 and year % 100 != 0) or year % 400 == 0 -%}
    {%- set month_days = [31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] -%}
    {%- if month < 1 or month > 12 or day < 1 or day > month_days[month - 1] -%}
        {{ exceptions.raise_compiler_error(message ~ ", got '" ~ value ~ "' (no such day)") }}
    {%- endif -%}
    {{- value -}}
{%- endmacro %}

{#- The var insiders_definition (a definition's name, to force it), checked where it
    enters: only lower-case letters and _ may reach SQL. None when not set. -#}
{% macro definition_var() -%}
    {%- set forced = var('insiders_definition', none) -%}
    {%- if forced and not (
        forced is string and forced | length <= 64
        and forced.replace('_', 'a').isalpha() and forced.islower()
    ) -%}
        {{ exceptions.raise_compiler_error(
            "var insiders_definition must be a definition name (lower-case letters and _), "
            ~ "got '" ~ forced ~ "'"
        ) }}
    {%- endif -%}
    {{- return(forced or none) -}}
{%- endmacro %}
