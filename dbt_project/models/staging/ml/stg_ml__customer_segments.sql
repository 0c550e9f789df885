with

source as (

    select * from {{ source('ml', 'customer_segments') }}

),

renamed as (

    select
        customer_id,
        cluster_id,
        cluster_name,
        is_insider,
        as_of,
        run_id,
        model

    from source

)

select * from renamed
