{#- Question 5, expected revenue: the chosen Insiders' and all customers' revenue over
    the next var('forecast_horizon_months') months, made from each group's last-horizon
    revenue with the trend and the seasonality that one year of data shows
    (models_py/group_forecast.py), with an interval from the errors of the same
    forecast at every rolling-origin origin (insiders.forecast_evaluation). -#}
with

forecasts as (

    select * from {{ ref('stg_ml__group_forecasts') }}

),

choice as (

    select definition from {{ ref('definition_choice') }}
    where is_chosen

),

final as (

    select
        case
            when forecasts.definition = 'all_customers' then 'all_customers' else 'insiders'
        end as customer_group,
        forecasts.definition,
        forecasts.customers,
        forecasts.origin_date as period_start,
        forecasts.horizon_end as period_end,
        date_diff('day', forecasts.origin_date, forecasts.horizon_end) as horizon_days,
        forecasts.forecast_revenue as expected_revenue,
        forecasts.lower_bound,
        forecasts.upper_bound,
        forecasts.naive_revenue,
        forecasts.trend_factor,
        forecasts.seasonal_factor,
        forecasts.season_observed,
        forecasts.model_revenue,
        forecasts.errors_behind_interval,
        forecasts.interval_method,
        forecasts.parameters,
        forecasts.as_of,
        forecasts.run_id

    from forecasts
    left join choice
        on forecasts.definition = choice.definition
    where
        forecasts.origin_date = forecasts.as_of
        and (choice.definition is not null or forecasts.definition = 'all_customers')

)

select * from final
