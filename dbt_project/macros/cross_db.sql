{#- SQL that differs between the warehouses the project builds on (DuckDB, the default,
    PostgreSQL and Apache Spark): each difference is one small macro here, so a model reads the same
    on every engine. Where dbt has a cross-database macro (dbt.datediff, dbt.dateadd)
    these call it; the others dispatch (adapter.dispatch) to an engine's own version,
    default__ being portable SQL. Traps they avoid, besides syntax: integer / integer
    truncates on PostgreSQL (divide with ratio()), avg() and percentile_cont() of an
    exact number are numeric there, and text sorts by the database's collation. Spark
    (4, ANSI mode on) has no `double precision` nor bare `varchar`, no generate_series
    over a column, no ordered string_agg or array_agg, and months_between of its own. -#}

{#- A join to the integers `start` .. `stop` (both included) as `alias (column)`;
    `stop` may refer to the relations joined before it. -#}
{% macro join_integer_series(start, stop, alias, column) -%}
    {{ return(adapter.dispatch('join_integer_series')(start, stop, alias, column)) }}
{%- endmacro %}

{% macro default__join_integer_series(start, stop, alias, column) -%}
    cross join generate_series({{ start }}, {{ stop }}) as {{ alias }} ({{ column }})
{%- endmacro %}

{% macro spark__join_integer_series(start, stop, alias, column) -%}
    cross join lateral explode(sequence({{ start }}, {{ stop }})) as {{ alias }} ({{ column }})
{%- endmacro %}

{#- An aggregate: the texts of `expression` joined by `delimiter` in `order_by` order
    (of the rows matching `where`, when given); null when no row. -#}
{% macro ordered_string_agg(expression, delimiter, order_by, where=none) -%}
    {{ return(adapter.dispatch('ordered_string_agg')(expression, delimiter, order_by, where)) }}
{%- endmacro %}

{% macro default__ordered_string_agg(expression, delimiter, order_by, where) -%}
    {%- set filter = (' filter (where ' ~ where ~ ')') if where else '' -%}
    string_agg({{ expression }}, {{ delimiter }} order by {{ order_by }}){{ filter }}
{%- endmacro %}

{% macro spark__ordered_string_agg(expression, delimiter, order_by, where) -%}
    {%- set filter = (' filter (where ' ~ where ~ ')') if where else '' -%}
    listagg({{ expression }}, {{ delimiter }}) within group (order by {{ order_by }}){{ filter }}
{%- endmacro %}

{#- Whole days from the date of `start` to the date of `end` (an integer). -#}
{% macro days_between(start, end) -%}
    {{ return(adapter.dispatch('days_between')(start, end)) }}
{%- endmacro %}

{% macro default__days_between(start, end) -%}
    cast({{ dbt.datediff(start, end, 'day') }} as integer)
{%- endmacro %}

{#- dbt-spark's datediff wraps each side in a not-null assertion: a null date (a
    customer without a purchase) must give null here, as on the other engines. -#}
{% macro spark__days_between(start, end) -%}
    datediff(cast({{ end }} as date), cast({{ start }} as date))
{%- endmacro %}

{#- Calendar months from `start` to `end`: month boundaries crossed (an integer). -#}
{% macro months_between(start, end) -%}
    {{ return(adapter.dispatch('months_between')(start, end)) }}
{%- endmacro %}

{% macro default__months_between(start, end) -%}
    cast({{ dbt.datediff(start, end, 'month') }} as integer)
{%- endmacro %}

{#- dbt-spark's datediff('month') counts from months_between, which treats two month
    ends as whole months (2011-01-31 to 2011-02-28: 1, not boundaries crossed): count
    the boundaries from year and month. -#}
{% macro spark__months_between(start, end) -%}
    cast(
        (year({{ end }}) * 12 + month({{ end }})) - (year({{ start }}) * 12 + month({{ start }}))
        as integer
    )
{%- endmacro %}

{#- The date `months` calendar months after `date_expression` (before, if negative);
    the day is clamped to the month's last (2011-03-31 - 1 month = 2011-02-28). -#}
{% macro add_months(date_expression, months) -%}
    {{ return(adapter.dispatch('add_months')(date_expression, months)) }}
{%- endmacro %}

{% macro default__add_months(date_expression, months) -%}
    cast({{ dbt.dateadd('month', months, date_expression) }} as date)
{%- endmacro %}

{#- Spark's own add_months clamps the same way; dbt-spark's dateadd goes through unix
    seconds and back for the time of day a date does not have. -#}
{% macro spark__add_months(date_expression, months) -%}
    add_months(cast({{ date_expression }} as date), cast({{ months }} as integer))
{%- endmacro %}

{#- numerator / denominator as a double: never integer division (PostgreSQL truncates
    bigint / bigint), never numeric (PostgreSQL's exact division of two numerics); null
    when the denominator is 0 (DuckDB would say inf or nan, PostgreSQL fail). -#}
{% macro ratio(numerator, denominator) -%}
    cast({{ numerator }} as {{ type_double() }}) / nullif(cast({{ denominator }} as {{ type_double() }}), 0)
{%- endmacro %}

{#- The median (interpolated, as percentile_cont) as a double on every engine. -#}
{% macro median(expression) -%}
    cast(percentile_cont(0.5) within group (order by {{ expression }}) as {{ type_double() }})
{%- endmacro %}

{#- The mean as a double (avg of an integer or decimal is numeric on PostgreSQL). -#}
{% macro mean(expression) -%}
    cast(avg({{ expression }}) as {{ type_double() }})
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

{#- Spark has no ordered aggregate: sort the rows' (keys..., value) structs with a
    comparator written from `order_by` (each key asc or desc, nulls last as DuckDB
    does), then take the first; try_element_at: null, not an error (ANSI), when no row
    matches. -#}
{% macro spark__first_by(value, order_by, where) -%}
    {%- set keys = [] -%}
    {%- for part in order_by.split(',') -%}
        {%- set words = part.strip().split(' ') -%}
        {%- if part.count('(') != part.count(')') or words | length == 0 -%}
            {%- set message = "first_by: cannot split order_by '" ~ order_by ~ "' on commas" -%}
            {{ exceptions.raise_compiler_error(message) }}
        {%- endif -%}
        {%- set descending = words[-1] | lower == 'desc' -%}
        {%- set directed = words[-1] | lower in ('asc', 'desc') -%}
        {%- set expression = (words[:-1] if directed else words) | join(' ') -%}
        {%- do keys.append((expression, descending)) -%}
    {%- endfor -%}
    {%- set fields = [] -%}
    {%- for expression, _ in keys -%}
        {%- do fields.append(expression ~ ' as k' ~ loop.index0) -%}
    {%- endfor -%}
    {%- set filter = (' filter (where ' ~ where ~ ')') if where else '' -%}
    {%- set comparison = namespace(sql='0') -%}
    {%- for expression, descending in keys | reverse -%}
        {%- set k = 'k' ~ (keys | length - loop.index) -%}
        {%- set comparison.sql -%}
            case
                when l.{{ k }} is null and r.{{ k }} is null then {{ comparison.sql }}
                when l.{{ k }} is null then 1
                when r.{{ k }} is null then -1
                when l.{{ k }} < r.{{ k }} then {{ 1 if descending else -1 }}
                when l.{{ k }} > r.{{ k }} then {{ -1 if descending else 1 }}
                else {{ comparison.sql }}
            end
        {%- endset -%}
    {%- endfor -%}
    try_element_at(
        array_sort(
            collect_list(struct({{ fields | join(', ') }}, {{ value }} as v)){{ filter }},
            (l, r) -> {{ comparison.sql }}
        ),
        1
    ).v
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
