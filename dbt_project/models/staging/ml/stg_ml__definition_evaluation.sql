with

source as (

    select * from {{ source('ml', 'definition_evaluation') }}

),

renamed as (

    select
        {{ format_date('origin_date') }} || ':' || definition as definition_evaluation_id,
        origin_date,
        horizon_end,
        definition,
        members,
        customers_known,
        horizon_revenue,
        total_horizon_revenue,
        share_of_horizon_revenue,
        share_low,
        share_high,
        as_of,
        run_id

    from source

)

select * from renamed
