{#- Numbers as text for the answers people read (insiders.answers): thousands
    separators, fixed decimals, shares as percentages. Every SQL-side number
    formatting goes through these macros, so moving to another warehouse changes this
    file only: DuckDB's format() takes fmt-style specs ('{:,.0f}'); PostgreSQL's
    equivalent is to_char(x, 'FM999G999G999G990D0'). A null stays null, so an answer
    built with || from a missing figure is null and the caller's coalesce says so. -#}

{#- A count: 4,329. -#}
{% macro format_count(expression) -%}
    format('{:,}', cast({{ expression }} as bigint))
{%- endmacro %}

{#- A number with a fixed number of decimals and thousands separators: 2,021.17. -#}
{% macro format_number(expression, decimals=0) -%}
    format('{:,.{{ decimals }}f}', cast({{ expression }} as double precision))
{%- endmacro %}

{#- A share (0..1) as a percentage with one decimal: 0.198 -> 19.8%. -#}
{% macro format_share(expression) -%}
    (format('{:.1f}', cast(100 * {{ expression }} as double precision)) || '%')
{%- endmacro %}

{#- A signed share: -0.064 -> -6.4%. -#}
{% macro format_signed_share(expression) -%}
    (format('{:+.1f}', cast(100 * {{ expression }} as double precision)) || '%')
{%- endmacro %}

{#- A ratio with a trailing x: 1.0025 -> 1.003x (decimals=3). -#}
{% macro format_ratio(expression, decimals=2) -%}
    (format('{:.{{ decimals }}f}', cast({{ expression }} as double precision)) || 'x')
{%- endmacro %}

{#- A p-value in two significant digits; a p-value that underflowed to 0 says so. -#}
{% macro format_p_value(expression) -%}
    case
        when {{ expression }} = 0 then 'p < 1e-300'
        else 'p = ' || format('{:.2g}', cast({{ expression }} as double precision))
    end
{%- endmacro %}

{#- A date as YYYY-MM-DD (ISO text in DuckDB and PostgreSQL alike). -#}
{% macro format_date(expression) -%}
    cast(cast({{ expression }} as date) as varchar)
{%- endmacro %}
