{#- Numbers as text for the answers people read (insiders.answers): thousands
    separators, fixed decimals, shares as percentages. Every SQL-side number
    formatting goes through these macros, and they write the same text on every
    engine: DuckDB's format() takes fmt-style specs ('{:,.0f}'); PostgreSQL's to_char
    takes a picture ('FM999,990.0', ',' and '.' literally, not the locale's G and D).
    Both round the binary double the same way (C printf, half to even on exact ties).
    A null stays null, so an answer built with || from a missing figure is null and
    the caller's coalesce says so. -#}

{#- The picture of to_char (PostgreSQL) for a number with `decimals` decimals, with
    or without thousands separators; FM: no padding. -#}
{% macro _to_char_picture(decimals, separators=true) -%}
    {%- set whole = '999,999,999,999,990' if separators else '999999999999990' -%}
    'FM{{ whole }}{{ ('.' ~ '0' * decimals) if decimals > 0 else '' }}'
{%- endmacro %}

{#- A count: 4,329. -#}
{% macro format_count(expression) -%}
    {{ return(adapter.dispatch('format_count')(expression)) }}
{%- endmacro %}

{% macro default__format_count(expression) -%}
    format('{:,}', cast({{ expression }} as bigint))
{%- endmacro %}

{% macro postgres__format_count(expression) -%}
    to_char(cast({{ expression }} as bigint), {{ _to_char_picture(0) }})
{%- endmacro %}

{#- A number with a fixed number of decimals and thousands separators: 2,021.17. -#}
{% macro format_number(expression, decimals=0) -%}
    {{ return(adapter.dispatch('format_number')(expression, decimals)) }}
{%- endmacro %}

{% macro default__format_number(expression, decimals) -%}
    format('{:,.{{ decimals }}f}', cast({{ expression }} as double precision))
{%- endmacro %}

{% macro postgres__format_number(expression, decimals) -%}
    to_char(cast({{ expression }} as double precision), {{ _to_char_picture(decimals) }})
{%- endmacro %}

{#- A share (0..1) as a percentage with one decimal: 0.198 -> 19.8%. -#}
{% macro format_share(expression) -%}
    {{ return(adapter.dispatch('format_share')(expression)) }}
{%- endmacro %}

{% macro default__format_share(expression) -%}
    (format('{:.1f}', cast(100 * {{ expression }} as double precision)) || '%')
{%- endmacro %}

{% macro postgres__format_share(expression) -%}
    (
        to_char(cast(100 * {{ expression }} as double precision), {{ _to_char_picture(1, false) }})
        || '%'
    )
{%- endmacro %}

{#- A signed share: -0.064 -> -6.4%, 0 -> +0.0%. -#}
{% macro format_signed_share(expression) -%}
    {{ return(adapter.dispatch('format_signed_share')(expression)) }}
{%- endmacro %}

{% macro default__format_signed_share(expression) -%}
    (format('{:+.1f}', cast(100 * {{ expression }} as double precision)) || '%')
{%- endmacro %}

{% macro postgres__format_signed_share(expression) -%}
    (to_char(cast(100 * {{ expression }} as double precision), 'FMS999999999999990.0') || '%')
{%- endmacro %}

{#- A ratio with a trailing x: 1.0025 -> 1.003x (decimals=3). -#}
{% macro format_ratio(expression, decimals=2) -%}
    {{ return(adapter.dispatch('format_ratio')(expression, decimals)) }}
{%- endmacro %}

{% macro default__format_ratio(expression, decimals) -%}
    (format('{:.{{ decimals }}f}', cast({{ expression }} as double precision)) || 'x')
{%- endmacro %}

{% macro postgres__format_ratio(expression, decimals) -%}
    (
        to_char(cast({{ expression }} as double precision), {{ _to_char_picture(decimals, false) }})
        || 'x'
    )
{%- endmacro %}

{#- A p-value in two significant digits (printf's %.2g: 0.05, 0.0001, 1.2e-05, 1); a
    p-value that underflowed to 0 says so. -#}
{% macro format_p_value(expression) -%}
    {{ return(adapter.dispatch('format_p_value')(expression)) }}
{%- endmacro %}

{% macro default__format_p_value(expression) -%}
    case
        when {{ expression }} = 0 then 'p < 1e-300'
        else 'p = ' || format('{:.2g}', cast({{ expression }} as double precision))
    end
{%- endmacro %}

{#- %.2g by hand: the exponent of the value rounded to two digits decides, as in
    printf, between 1.2e-05 (below 1e-4, or 100 and more) and fixed decimals with
    trailing zeros dropped. -#}
{% macro postgres__format_p_value(expression) -%}
    {%- set value = 'cast(' ~ expression ~ ' as double precision)' -%}
    {%- set scientific = "trim(to_char(" ~ value ~ ", '9.9EEEE'))" -%}
    {%- set exponent = "cast(split_part(" ~ scientific ~ ", 'e', 2) as integer)" -%}
    case
        when {{ expression }} = 0 then 'p < 1e-300'
        when {{ exponent }} < -4 or {{ exponent }} >= 2
            then 'p = ' || replace({{ scientific }}, '.0e', 'e')
        else 'p = ' || rtrim(rtrim(
            to_char({{ value }}, 'FM999990.' || repeat('0', greatest(1 - {{ exponent }}, 1))),
            '0'
        ), '.')
    end
{%- endmacro %}

{#- A date as YYYY-MM-DD. -#}
{% macro format_date(expression) -%}
    {{ return(adapter.dispatch('format_date')(expression)) }}
{%- endmacro %}

{% macro default__format_date(expression) -%}
    cast(cast({{ expression }} as date) as varchar)
{%- endmacro %}

{#- Not cast to text: that follows the session's DateStyle. -#}
{% macro postgres__format_date(expression) -%}
    to_char({{ expression }}, 'YYYY-MM-DD')
{%- endmacro %}
