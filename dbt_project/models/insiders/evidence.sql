{#- Question 8, what guarantees they are better. Two kinds of evidence:
    insiders_vs_rest - per metric, the Insiders against the rest: difference of means
        with a bootstrap confidence interval and a Mann-Whitney test;
    time_backtest - Insiders chosen with data before a cut-off, and their share of the
        revenue after it, against random groups of the same size and the same number of
        top customers by past monetary. -#}
with

groups as (

    select * from {{ ref('stg_ml__group_evidence') }}

),

backtest as (

    select * from {{ ref('stg_ml__backtest_groups') }}

),

insiders_vs_rest as (

    select
        'insiders_vs_rest' || ':' || metric as evidence_id,
        'insiders_vs_rest' as evidence_kind,
        metric,
        'insiders' as customer_group,
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
        cast(null as date) as cutoff_date,
        cast(null as date) as holdout_end,
        cast(null as double) as holdout_revenue,
        cast(null as double) as share_of_holdout_revenue,
        cast(null as double) as random_groups_at_least_as_good,
        ci_low > 0 and p_value < 1 - confidence as is_significantly_higher,
        as_of,
        run_id

    from groups

),

time_backtest as (

    select
        'time_backtest' || ':' || customer_group as evidence_id,
        'time_backtest' as evidence_kind,
        'share_of_holdout_revenue' as metric,
        customer_group,
        customers as insiders,
        cast(null as bigint) as others,  -- noqa: RF04
        cast(null as double) as insiders_mean,
        cast(null as double) as others_mean,
        cast(null as double) as difference,
        share_ci_low as ci_low,
        share_ci_high as ci_high,
        case when customer_group = 'random' then 0.95 end as confidence,
        cast(null as double) as mann_whitney_u,
        random_groups_at_least_as_good as p_value,
        cutoff_date,
        holdout_end,
        holdout_revenue,
        share_of_holdout_revenue,
        random_groups_at_least_as_good,
        case
            when customer_group != 'random' then random_groups_at_least_as_good < 0.05
        end as is_significantly_higher,
        as_of,
        run_id

    from backtest

),

final as (

    select * from insiders_vs_rest
    union all
    select * from time_backtest

)

select * from final
