{#- Question 5, expected revenue: per group (insiders, others, all), the revenue
    expected over the next var('forecast_horizon_months') months (BG/NBD + Gamma-Gamma,
    pymc-marketing) with an interval calibrated on the backtest, and the backtest itself:
    the same models fitted before the cut-off against what the group then spent. -#}
with

forecast as (

    select * from {{ ref('stg_ml__revenue_forecast') }}

),

final as (

    select
        forecast_id,
        period,
        customer_group,
        customers,
        period_start,
        period_end,
        horizon_days,
        expected_revenue,
        lower_bound,
        upper_bound,
        calibrated_revenue,
        confidence,
        interval_method,
        actual_revenue,
        error,
        relative_error,
        absolute_percentage_error,
        parameters,
        as_of,
        run_id

    from forecast

)

select * from final
