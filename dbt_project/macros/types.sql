{#- Type names that differ between the engines (see macros/cross_db.sql). In a file of
    their own: the linter replaces them with their default rendering, which it can do
    only for macros called from another file. -#}

{#- The 8-byte float type: `double precision` (SQL standard, PostgreSQL, DuckDB);
    Spark knows `double` only. -#}
{% macro type_double() -%}
    {{ return(adapter.dispatch('type_double')()) }}
{%- endmacro %}

{% macro default__type_double() -%}
    double precision
{%- endmacro %}

{% macro spark__type_double() -%}
    double
{%- endmacro %}

{#- The unbounded text type: `varchar` (DuckDB, PostgreSQL); Spark's varchar needs a
    length, its text type is `string`. -#}
{% macro type_text() -%}
    {{ return(adapter.dispatch('type_text')()) }}
{%- endmacro %}

{% macro default__type_text() -%}
    varchar
{%- endmacro %}

{% macro spark__type_text() -%}
    string
{%- endmacro %}
