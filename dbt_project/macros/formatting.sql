{#- Numbers as text for the answers people read (insiders.answers): thousands
    separators, fixed decimals, shares as percentages. Every SQL-side number
    formatting goes through these macros, and they write the same text on every
    engine: DuckDB's format() takes fmt-style specs ('{:,.0f}'); PostgreSQL's to_char
    takes a picture ('FM999,990.0', ',' and '.' literally, not the locale's G and D);
    Spark's format_number takes a decimal count or a java.text.DecimalFormat pattern.
    All round the binary double the same way (C printf, half to even on exact ties:
    DecimalFormat rounds the double's exact value, half-even by default).
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

{% macro spark__format_count(expression) -%}
    format_number(cast({{ expression }} as bigint), 0)
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

{% macro spark__format_number(expression, decimals) -%}
    format_number(cast({{ expression }} as double), {{ decimals }})
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

{#- A DecimalFormat pattern: no thousands separators, as '{:.1f}'. -#}
{% macro spark__format_share(expression) -%}
    (format_number(cast(100 * {{ expression }} as double), '0.0') || '%')
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

{% macro spark__format_signed_share(expression) -%}
    (format_number(cast(100 * {{ expression }} as double), '+0.0;-0.0') || '%')
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

{% macro spark__format_ratio(expression, decimals) -%}
    (
        format_number(
            cast({{ expression }} as double), '0{{ ('.' ~ '0' * decimals) if decimals > 0 else '' }}'
        )
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

{#- %.2g with DecimalFormat: the exponent of the value rounded to two digits
    ('0.0E0': 1.2E-5) decides, as in printf, between scientific (exponent below -4, or
    2 and more: 1.2e-05, 1e+02) and at most 1 - exponent decimals with trailing zeros
    dropped (pattern '0.###'). -#}
{% macro spark__format_p_value(expression) -%}
    {%- set value = 'cast(' ~ expression ~ ' as double)' -%}
    {%- set scientific = "format_number(" ~ value ~ ", '0.0E0')" -%}
    {%- set exponent = "cast(substring_index(" ~ scientific ~ ", 'E', -1) as integer)" -%}
    {%- set mantissa = "replace(substring_index(" ~ scientific ~ ", 'E', 1), '.0', '')" -%}
    case
        when {{ expression }} = 0 then 'p < 1e-300'
        when {{ exponent }} < -4 or {{ exponent }} >= 2
            then 'p = ' || {{ mantissa }} || 'e'
            || case when {{ exponent }} < 0 then '-' else '+' end
            || lpad(cast(abs({{ exponent }}) as string), 2, '0')
        else 'p = ' || format_number(
            {{ value }}, '0.' || repeat('#', greatest(1 - {{ exponent }}, 1))
        )
    end
{%- endmacro %}

{#- A date as YYYY-MM-DD. -#}
{% macro format_date(expression) -%}
    {{ return(adapter.dispatch('format_date')(expression)) }}
{%- endmacro %}

{% macro default__format_date(expression) -%}
    cast(cast({{ expression }} as date) as {{ type_text() }})
{%- endmacro %}

{#- Not cast to text: that follows the session's DateStyle. -#}
{% macro postgres__format_date(expression) -%}
    to_char({{ expression }}, 'YYYY-MM-DD')
{%- endmacro %}

{% macro spark__format_date(expression) -%}
    date_format(cast({{ expression }} as date), 'yyyy-MM-dd')
{%- endmacro %}
