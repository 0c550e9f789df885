with

source as (

    select * from {{ source('ml', 'revenue_forecast') }}

),

renamed as (

    select
        period || ':' || customer_group as forecast_id,
        run_id,
        as_of,
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
        parameters

    from source

)

select * from renamed
