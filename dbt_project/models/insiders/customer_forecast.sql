{#- Per customer, what the next months should bring (pymc-marketing BG/NBD + Gamma-
    Gamma), beside their cluster: the detail behind insiders.revenue_forecast. -#}
with

forecast as (

    select * from {{ ref('stg_ml__customer_forecast') }}

),

segments as (

    select * from {{ ref('customer_membership') }}

),

final as (

    select
        forecast.customer_id,
        segments.cluster_id,
        segments.cluster_name,
        coalesce(segments.is_insider, false) as is_insider,
        forecast.probability_alive,
        forecast.expected_purchases,
        forecast.expected_spend,
        forecast.expected_revenue,
        forecast.forecast_start,
        forecast.forecast_end,
        forecast.as_of,
        forecast.run_id

    from forecast
    left join segments
        on forecast.customer_id = segments.customer_id

)

select * from final
