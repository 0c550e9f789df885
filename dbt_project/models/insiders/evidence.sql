{#- Question 8, what guarantees they are better: per metric, the Insiders against the
    rest, with a bootstrap confidence interval of the difference and a Mann-Whitney
    test. (The time backtest against random and top-monetary groups is to come.) -#}
with

groups as (

    select * from {{ ref('stg_ml__group_evidence') }}

),

final as (

    select
        'insiders_vs_rest' || ':' || metric as evidence_id,
        'insiders_vs_rest' as evidence_kind,
        metric,
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

)

select * from final
