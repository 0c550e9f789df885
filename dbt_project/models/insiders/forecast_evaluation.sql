{#- Question 5 evaluated: at every rolling-origin origin, the chosen Insiders' revenue
    over the horizon as forecast with the data before the origin (and the naive
    forecast, "they will spend what they spent in the last horizon"), against what
    they then spent: relative errors, and whether the interval covered it. -#}
with

forecasts as (

    select * from {{ ref('stg_ml__group_forecasts') }}

),

choice as (

    select definition from {{ ref('definition_choice') }}
    where is_chosen

),

origins as (

    select distinct origin_date from {{ ref('stg_ml__definition_evaluation') }}

),

final as (

    select
        forecasts.group_forecasts_id as forecast_evaluation_id,
        forecasts.origin_date,
        forecasts.horizon_end,
        forecasts.definition,
        forecasts.customers,
        forecasts.forecast_revenue,
        forecasts.lower_bound,
        forecasts.upper_bound,
        forecasts.naive_revenue,
        forecasts.model_revenue,
        forecasts.trend_factor,
        forecasts.seasonal_factor,
        forecasts.errors_behind_interval,
        forecasts.actual_revenue,
        {{ ratio('forecasts.forecast_revenue', 'forecasts.actual_revenue') }} - 1 as relative_error,
        {{ ratio('forecasts.naive_revenue', 'forecasts.actual_revenue') }} - 1
            as naive_relative_error,
        {{ ratio('forecasts.model_revenue', 'forecasts.actual_revenue') }} - 1
            as model_relative_error,
        forecasts.actual_revenue between forecasts.lower_bound and forecasts.upper_bound
            as interval_covers_actual,
        {{ ratio('forecasts.upper_bound - forecasts.lower_bound', 'forecasts.forecast_revenue') }}
            as interval_width_ratio,
        forecasts.as_of,
        forecasts.run_id

    from forecasts
    inner join choice
        on forecasts.definition = choice.definition
    inner join origins
        on forecasts.origin_date = origins.origin_date

)

select * from final
