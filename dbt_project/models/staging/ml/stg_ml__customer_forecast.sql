with

source as (

    select * from {{ source('ml', 'customer_forecast') }}

),

renamed as (

    select
        customer_id,
        probability_alive,
        expected_purchases,
        expected_spend,
        expected_revenue,
        forecast_start,
        forecast_end,
        as_of,
        run_id

    from source

)

select * from renamed
