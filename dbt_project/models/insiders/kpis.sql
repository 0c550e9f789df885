{#- Question 4, the revenue share: one row per as-of date of the current labels.
    is_synthetic: some loaded file is synthetic demo data, so no figure here is the
    store's (the report and the dashboard say so on top of every page). -#}
with

segments as (

    select * from {{ ref('customer_membership') }}

),

customers as (

    select * from {{ ref('dim_customers') }}

),

transactions as (

    select * from {{ ref('fct_transactions') }}

),

as_of as (

    select max(as_of) as as_of from segments

),

loaded_files as (

    select coalesce(bool_or(is_synthetic), false) as is_synthetic
    from {{ ref('stg_online_retail__loaded_files') }}

),

store as (

    select
        sum(transactions.revenue) as store_revenue,
        sum(transactions.quantity) filter (where not transactions.is_return) as store_items

    from transactions
    cross join as_of
    where transactions.invoice_at < as_of.as_of

),

labelled as (

    select
        segments.is_insider,
        customers.monetary,
        customers.gross_revenue,
        customers.frequency,
        customers.purchased_items

    from segments
    inner join customers
        on segments.customer_id = customers.customer_id

),

split as (

    select
        count(*) filter (where is_insider) as insiders,
        count(*) as customers,
        sum(monetary) filter (where is_insider) as insiders_revenue,
        sum(monetary) as customer_revenue,
        sum(purchased_items) filter (where is_insider) as insiders_items,
        {{ ratio(
            'sum(gross_revenue) filter (where is_insider)',
            'sum(frequency) filter (where is_insider)'
        ) }} as insiders_avg_ticket,
        {{ ratio(
            'sum(gross_revenue) filter (where not is_insider)',
            'nullif(sum(frequency) filter (where not is_insider), 0)'
        ) }} as others_avg_ticket

    from labelled

),

final as (

    select
        as_of.as_of,
        split.insiders,
        split.customers,
        {{ ratio('split.insiders', 'split.customers') }} as share_of_customers,
        cast(split.insiders_revenue as decimal(18, 4)) as insiders_revenue,
        {{ ratio('split.insiders_revenue', 'store.store_revenue') }} as share_of_all_revenue,
        {{ ratio('split.insiders_revenue', 'split.customer_revenue') }}
            as share_of_customer_revenue,
        {{ ratio('split.insiders_items', 'store.store_items') }} as share_of_items,
        split.insiders_avg_ticket,
        split.others_avg_ticket,
        loaded_files.is_synthetic

    from split
    cross join store
    cross join as_of
    cross join loaded_files
    where split.customers > 0

)

select * from final
