with

source as (

    select * from {{ source('ml', 'eligibility_rules') }}

),

renamed as (

    select
        rule_id,
        rule,
        conditions,
        customers,
        insiders,
        precision,
        recall,
        as_of,
        run_id

    from source

)

select * from renamed
