{#- Question 6, what makes a person eligible: the entry rules in words of the chosen
    definition's members (insiders.definition_choice), with how faithful each is to
    the membership (precision, recall). -#}
with

rules as (

    select rules.*
    from {{ ref('stg_ml__eligibility_rules') }} as rules
    inner join {{ ref('definition_choice') }} as choice
        on rules.definition = choice.definition and choice.is_chosen

),

final as (

    select
        rule_id,
        definition,
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
