{#- Question 1, who is eligible: the current Insiders (the members of the chosen
    definition, insiders.definition_choice), with their features, their cluster, the
    date their current membership began and what they should spend next: the group's
    forecast split among them by their BG/NBD + Gamma-Gamma expected revenue. -#}
with

segments as (

    select * from {{ ref('customer_membership') }}

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

group_forecast as (

    select * from {{ ref('revenue_forecast') }}
    where customer_group = 'insiders'

),

model_total as (

    select sum(forecast.expected_revenue) as model_revenue
    from forecast
    inner join segments
        on forecast.customer_id = segments.customer_id
    where segments.is_insider

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
        segments.member_rank,
        segments.definition,
        forecast.expected_revenue
        * group_forecast.expected_revenue
        / nullif(model_total.model_revenue, 0) as expected_revenue_next_months,
        forecast.expected_revenue as model_expected_revenue,
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
    cross join group_forecast
    cross join model_total
    where segments.is_insider

)

select * from final
