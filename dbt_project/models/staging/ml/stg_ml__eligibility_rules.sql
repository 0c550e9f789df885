with

source as (

    select * from {{ source('ml', 'eligibility_rules') }}

),

renamed as (

    select
        definition || ':' || rule_id as eligibility_rules_id,
        definition,
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
