{#- Question 6, what makes a person eligible: the entry rules in words, with how
    faithful each is to the clustering (precision, recall). -#}
with

rules as (

    select * from {{ ref('stg_ml__eligibility_rules') }}

),

final as (

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

    from rules

)

select * from final
