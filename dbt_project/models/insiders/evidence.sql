{#- Question 8, what guarantees they are better, part one: per metric, the Insiders
    (the chosen definition's members) against the rest (difference of means with a
    bootstrap confidence interval and a Mann-Whitney test). The out-of-sample part,
    every definition against random groups and the top spenders at every origin, is
    insiders.definition_evaluation. -#}
with

groups as (

    select evidence.*
    from {{ ref('stg_ml__group_evidence') }} as evidence
    inner join {{ ref('definition_choice') }} as choice
        on evidence.definition = choice.definition and choice.is_chosen

),

insiders_vs_rest as (

    select
        'insiders_vs_rest' || ':' || metric as evidence_id,
        'insiders_vs_rest' as evidence_kind,
        metric,
        'insiders' as customer_group,
        definition,
        insiders,
        others,
        insiders_mean,
        others_mean,
        difference,
        ci_low,
        ci_high,
        confidence,
        mann_whitney_u,
        p_value,
        ci_low > 0 and p_value < 1 - confidence as is_significantly_higher,
        as_of,
        run_id

    from groups

),

final as (

    select * from insiders_vs_rest

)

select * from final
