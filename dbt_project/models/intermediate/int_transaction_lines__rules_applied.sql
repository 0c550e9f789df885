{#- Every loaded line with the first business rule that removes it (null: kept) and
    the customer it counts for under the guest policy. Rules are checked in this
    order, so each removed line is charged to exactly one rule. -#}
{%- set price_floor = number_var('unit_price_floor', minimum=0) %}
with

lines as (

    select * from {{ ref('stg_online_retail__transactions') }}

),

loaded_files as (

    select * from {{ ref('stg_online_retail__loaded_files') }}

),

excluded_customers as (

    select * from {{ ref('excluded_customers') }}

),

excluded_countries as (

    select * from {{ ref('excluded_countries') }}

),

excluded_stock_codes as (

    select * from {{ ref('excluded_stock_codes') }}

),

checked as (

    select
        lines.transaction_line_id,
        lines.invoice_no,
        lines.stock_code,
        lines.description,
        lines.quantity,
        lines.invoice_at,
        lines.invoice_date,
        lines.unit_price,
        lines.country,
        lines.source_file,
        lines.source_line,
        loaded_files.loaded_at as file_loaded_at,
        {{ rules_version() }} as rules_version,
        lines.customer_id is null as is_guest,
        lines.quantity < 0 as is_return,
        lines.invoice_no like 'C%' as is_cancellation,
        cast(lines.quantity * lines.unit_price as decimal(18, 4)) as revenue,
        case
            when excluded_customers.customer_id is not null then 'excluded_customer'
            when excluded_countries.country is not null then 'excluded_country'
            when excluded_stock_codes.stock_code is not null then 'excluded_stock_code'
            when lines.unit_price < {{ price_floor }} then 'unit_price_below_floor'
        end as exclusion_rule,
        {% if guest_policy() == 'per_invoice' -%}
            coalesce(lines.customer_id, 'guest-' || lines.invoice_no) as customer_id
        {%- else -%}
            lines.customer_id
        {%- endif %}

    from lines
    left join loaded_files
        on lines.source_file = loaded_files.source_file
    left join excluded_customers
        on lines.customer_id = excluded_customers.customer_id
    left join excluded_countries
        on lines.country = excluded_countries.country
    left join excluded_stock_codes
        on lines.stock_code = excluded_stock_codes.stock_code

)

select * from checked
