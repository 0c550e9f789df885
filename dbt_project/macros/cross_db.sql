{#- SQL that differs between the warehouses the project builds on (DuckDB, the default,
    and PostgreSQL): each difference is one small macro here, so a model reads the same
    on every engine. Where dbt has a cross-database macro (dbt.datediff, dbt.dateadd)
    these call it; the others dispatch (adapter.dispatch) to an engine's own version,
    default__ being portable SQL. Traps they avoid, besides syntax: integer / integer
    truncates on PostgreSQL (divide with ratio()), avg() and percentile_cont() of an
    exact number are numeric there, and text sorts by the database's collation. -#}

{#- Whole days from the date of `start` to the date of `end` (an integer). -#}
{% macro days_between(start, end) -%}
    cast({{ dbt.datediff(start, end, 'day') }} as integer)
{%- endmacro %}

{#- Calendar months from `start` to `end`: month boundaries crossed (an integer). -#}
{% macro months_between(start, end) -%}
    cast({{ dbt.datediff(start, end, 'month') }} as integer)
{%- endmacro %}

{#- The date `months` calendar months after `date_expression` (before, if negative);
    the day is clamped to the month's last (2011-03-31 - 1 month = 2011-02-28). -#}
{% macro add_months(date_expression, months) -%}
    cast({{ dbt.dateadd('month', months, date_expression) }} as date)
{%- endmacro %}

{#- numerator / denominator as a double: never integer division (PostgreSQL truncates
    bigint / bigint), never numeric (PostgreSQL's exact division of two numerics); null
    when the denominator is 0 (DuckDB would say inf or nan, PostgreSQL fail). -#}
{% macro ratio(numerator, denominator) -%}
    cast({{ numerator }} as double precision) / nullif(cast({{ denominator }} as double precision), 0)
{%- endmacro %}

{#- The median (interpolated, as percentile_cont) as a double on every engine. -#}
{% macro median(expression) -%}
    cast(percentile_cont(0.5) within group (order by {{ expression }}) as double precision)
{%- endmacro %}

{#- The mean as a double (avg of an integer or decimal is numeric on PostgreSQL). -#}
{% macro mean(expression) -%}
    cast(avg({{ expression }}) as double precision)
{%- endmacro %}

{#- An aggregate: `value` of the first row in `order_by` order (of the rows matching
    `where`, when given). The order must be total (no ties) for a stable answer. -#}
{% macro first_by(value, order_by, where=none) -%}
    {{ return(adapter.dispatch('first_by')(value, order_by, where)) }}
{%- endmacro %}

{% macro default__first_by(value, order_by, where) -%}
    {%- set filter = (' filter (where ' ~ where ~ ')') if where else '' -%}
    (array_agg({{ value }} order by {{ order_by }}){{ filter }})[1]
{%- endmacro %}

{% macro duckdb__first_by(value, order_by, where) -%}
    {%- set filter = (' filter (where ' ~ where ~ ')') if where else '' -%}
    first({{ value }} order by {{ order_by }}){{ filter }}
{%- endmacro %}

{#- A text expression compared byte by byte (code point order) in ORDER BY, whatever
    the database's collation: DuckDB's default; a PostgreSQL database created with
    en_US.UTF-8 would sort 'm' before 'M' and change a hash or a tie-break. -#}
{% macro binary_text(expression) -%}
    {{ return(adapter.dispatch('binary_text')(expression)) }}
{%- endmacro %}

{% macro default__binary_text(expression) -%}
    {{ expression }}
{%- endmacro %}

{% macro postgres__binary_text(expression) -%}
    {{ expression }} collate "C"
{%- endmacro %}

{#- A post-hook of the tables: on PostgreSQL, gather the table's statistics now (a
    freshly created table has none until autovacuum comes, so the planner guesses
    half a million rows for a one-row table and pays a second of JIT compilation for
    insiders.answers). Nothing on DuckDB. -#}
{% macro analyze_table() -%}
    {{ return(adapter.dispatch('analyze_table')()) }}
{%- endmacro %}

{% macro default__analyze_table() -%}
{%- endmacro %}

{% macro postgres__analyze_table() -%}
    {%- if model.config.materialized in ('table', 'incremental') -%}
        analyze {{ this }}
    {%- endif -%}
{%- endmacro %}
