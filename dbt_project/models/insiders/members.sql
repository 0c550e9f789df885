{#- Who is eligible: the current Insiders, with the features that put them there. -#}
with

segments as (

    select * from {{ ref('stg_ml__customer_segments') }}

),

customers as (

    select * from {{ ref('dim_customers') }}

),

final as (

    select
        customers.customer_id,
        segments.cluster_id,
        segments.cluster_name,
        customers.country,
        customers.recency_days,
        customers.frequency,
        customers.monetary,
        customers.gross_revenue,
        customers.avg_ticket,
        customers.avg_basket_size,
        customers.return_rate,
        customers.purchase_rate,
        customers.first_purchase_at,
        customers.last_purchase_at,
        customers.rfm_segment,
        segments.as_of,
        segments.run_id

    from segments
    inner join customers
        on segments.customer_id = customers.customer_id
    where segments.is_insider

)

select * from final
