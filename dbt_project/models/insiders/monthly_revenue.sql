{#- Per month: revenue, orders, active customers, and the current Insiders' part. -#}
with

transactions as (

    select * from {{ ref('fct_transactions') }}

),

segments as (

    select * from {{ ref('customer_membership') }}

),

lines as (

    select
        date_trunc('month', transactions.invoice_at) as month_start,
        transactions.invoice_no,
        transactions.customer_id,
        transactions.revenue,
        transactions.is_return,
        coalesce(segments.is_insider, false) as is_insider

    from transactions
    left join segments
        on transactions.customer_id = segments.customer_id

),

final as (

    select
        cast(month_start as date) as month_start,
        cast(sum(revenue) as decimal(18, 4)) as revenue,
        count(distinct invoice_no) filter (where not is_return) as orders,
        count(distinct customer_id) filter (where not is_return) as active_customers,
        cast(sum(revenue) filter (where is_insider) as decimal(18, 4)) as insiders_revenue,
        cast(sum(revenue) filter (where not is_insider) as decimal(18, 4)) as others_revenue,
        count(distinct customer_id) filter (
            where is_insider and not is_return
        ) as active_insiders

    from lines
    group by month_start

)

select * from final
