with

source as (

    select * from {{ source('ml', 'group_forecasts') }}

),

renamed as (

    select
        {{ format_date('origin_date') }} || ':' || definition as group_forecasts_id,
        origin_date,
        horizon_end,
        definition,
        customers,
        naive_revenue,
        trend_factor,
        seasonal_factor,
        season_observed,
        forecast_revenue,
        lower_bound,
        upper_bound,
        log_half_width,
        errors_behind_interval,
        interval_method,
        model_revenue,
        actual_revenue,
        log_error,
        parameters,
        as_of,
        run_id

    from source

)

select * from renamed
