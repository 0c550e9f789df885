with

source as (

    select * from {{ source('ml', 'insiders_definitions') }}

),

renamed as (

    select
        definition,
        description,
        sort_order,
        as_of,
        run_id

    from source

)

select * from renamed
