with

source as (

    select * from {{ source('ml', 'definition_members') }}

),

renamed as (

    select
        {{ format_date('evaluation_date') }}
        || ':'
        || definition
        || ':'
        || customer_id as definition_members_id,
        evaluation_date,
        definition,
        customer_id,
        member_rank,
        as_of,
        run_id

    from source

)

select * from renamed
