with

source as (

    select * from {{ source('ml', 'membership_evaluations') }}

),

renamed as (

    select
        customer_id || '@' || strftime(evaluation_date, '%Y-%m-%d') as customer_evaluation_id,
        customer_id,
        evaluation_date,
        cluster_id,
        cluster_name,
        is_insider,
        as_of,
        run_id

    from source

)

select * from renamed
