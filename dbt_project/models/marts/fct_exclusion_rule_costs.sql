{#- One row per business rule: lines, revenue, invoices and customers it removes. -#}
with

exclusions as (

    select * from {{ ref('fct_transaction_exclusions') }}

),

final as (

    select
        exclusion_rule,
        count(*) as excluded_lines,
        cast(sum(revenue) as decimal(18, 4)) as excluded_revenue,
        cast(sum(revenue) filter (where not is_return) as decimal(18, 4)) as excluded_gross_revenue,
        count(distinct invoice_no) as excluded_invoices,
        count(distinct customer_id) as customers_affected

    from exclusions
    group by exclusion_rule

)

select * from final
