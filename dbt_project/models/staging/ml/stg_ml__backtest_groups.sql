with

source as (

    select * from {{ source('ml', 'backtest_groups') }}

),

renamed as (

    select
        run_id,
        as_of,
        cutoff_date,
        holdout_end,
        model,
        customer_group,
        customers,
        holdout_revenue,
        share_of_holdout_revenue,
        share_ci_low,
        share_ci_high,
        random_groups_at_least_as_good

    from source

)

select * from renamed
