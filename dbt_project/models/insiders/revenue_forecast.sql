{#- Question 5, expected revenue: the chosen Insiders' and all customers' revenue over
    the next var('forecast_horizon_months') months, made from each group's last-horizon
    revenue with the trend and the seasonality that one year of data shows
    (models_py/group_forecast.py), with an interval from the errors of the same
    forecast at every rolling-origin origin, and the Insiders' forecast's record over
    those origins (insiders.forecast_evaluation summarised: median absolute relative
    errors of the forecast, the naive forecast and the BG/NBD sum; coverage). -#}
with

forecasts as (

    select * from {{ ref('stg_ml__group_forecasts') }}

),

choice as (

    select definition from {{ ref('definition_choice') }}
    where is_chosen

),

accuracy as (

    select
        'insiders' as customer_group,
        count(*) as evaluation_origins,
        count(*) filter (where interval_covers_actual) as origins_covered,
        {{ median('abs(relative_error)') }} as median_abs_relative_error,
        {{ median('abs(naive_relative_error)') }} as naive_median_abs_relative_error,
        {{ median('abs(model_relative_error)') }} as model_median_abs_relative_error

    from {{ ref('forecast_evaluation') }}

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
        {{ days_between('forecasts.origin_date', 'forecasts.horizon_end') }} as horizon_days,
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
        accuracy.evaluation_origins,
        accuracy.origins_covered,
        accuracy.median_abs_relative_error,
        accuracy.naive_median_abs_relative_error,
        accuracy.model_median_abs_relative_error,
        forecasts.parameters,
        forecasts.as_of,
        forecasts.run_id

    from forecasts
    left join choice
        on forecasts.definition = choice.definition
    left join accuracy
        on
            accuracy.customer_group
            = case
                when forecasts.definition = 'all_customers' then 'all_customers'
                else 'insiders'
            end
    where
        forecasts.origin_date = forecasts.as_of
        and (choice.definition is not null or forecasts.definition = 'all_customers')

)

select * from final
