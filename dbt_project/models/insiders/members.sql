{#- Question 1, who is eligible: the current Insiders, with the features that put them
    there, the date their current membership began and what they should spend next. -#}
with

segments as (

    select * from {{ ref('stg_ml__customer_segments') }}

),

customers as (

    select * from {{ ref('dim_customers') }}

),

history as (

    select * from {{ ref('membership_history') }}

),

forecast as (

    select * from {{ ref('stg_ml__customer_forecast') }}

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
        history.valid_from as member_since,
        history.membership_number,
        forecast.expected_revenue as expected_revenue_next_months,
        forecast.probability_alive,
        segments.as_of,
        segments.run_id

    from segments
    inner join customers
        on segments.customer_id = customers.customer_id
    left join history
        on segments.customer_id = history.customer_id and history.is_current
    left join forecast
        on segments.customer_id = forecast.customer_id
    where segments.is_insider

)

select * from final
