{#- Questions 6 and 8, what makes a person eligible and what guarantees they are
    better: at every rolling-origin origin, each candidate definition of the Insiders
    (members chosen with the data before the origin, all of the same size) and random
    groups, with their share of the net revenue of the horizon after it and their ratio
    to the same number of top customers by past net revenue. -#}
with

evaluation as (

    select * from {{ ref('stg_ml__definition_evaluation') }}

),

definitions as (

    select * from {{ ref('stg_ml__insiders_definitions') }}

),

baseline as (

    select
        origin_date,
        horizon_revenue as baseline_revenue

    from evaluation
    where definition = 'top_past_revenue'

),

final as (

    select
        evaluation.definition_evaluation_id,
        evaluation.origin_date,
        evaluation.horizon_end,
        evaluation.definition,
        coalesce(definitions.description, 'random customers of the same number (mean of the draws)')
            as description,
        coalesce(definitions.sort_order, 99) as sort_order,
        evaluation.definition = 'random' as is_baseline_random,
        evaluation.members,
        evaluation.customers_known,
        evaluation.horizon_revenue,
        evaluation.total_horizon_revenue,
        evaluation.share_of_horizon_revenue,
        evaluation.share_low,
        evaluation.share_high,
        evaluation.horizon_revenue / nullif(baseline.baseline_revenue, 0)
            as ratio_to_top_past_revenue,
        evaluation.as_of,
        evaluation.run_id

    from evaluation
    left join definitions
        on evaluation.definition = definitions.definition
    left join baseline
        on evaluation.origin_date = baseline.origin_date

)

select * from final
