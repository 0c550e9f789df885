{#- Which definition the Insiders use, and why: one row per candidate definition with
    its rolling-origin record. The rule: among the definitions that took at least what
    the top customers by past net revenue took at EVERY origin, the best mean ratio
    (ties: the simpler one, top_past_revenue, then the listed order); if none did, the
    best mean ratio, and the reason says so. var insiders_definition forces one. -#}
{%- set forced = definition_var() -%}
with

forced as (

    select {{ "'" ~ forced ~ "'" if forced else 'null' }} as definition

),

evaluation as (

    select * from {{ ref('definition_evaluation') }}
    where not is_baseline_random

),

definitions as (

    select * from {{ ref('stg_ml__insiders_definitions') }}

),

origins as (

    select count(distinct origin_date) as origins from evaluation

),

record as (

    select
        definitions.definition,
        definitions.description,
        definitions.sort_order,
        definitions.as_of,
        definitions.run_id,
        count(evaluation.origin_date) as origins_evaluated,
        avg(evaluation.ratio_to_top_past_revenue) as mean_ratio,
        min(evaluation.ratio_to_top_past_revenue) as min_ratio,
        max(evaluation.ratio_to_top_past_revenue) as max_ratio,
        count(*) filter (where evaluation.ratio_to_top_past_revenue < 1 - 1e-9)
            as origins_below_top_past_revenue,
        avg(evaluation.share_of_horizon_revenue) as mean_share

    from definitions
    left join evaluation
        on definitions.definition = evaluation.definition
    group by
        definitions.definition,
        definitions.description,
        definitions.sort_order,
        definitions.as_of,
        definitions.run_id

),

qualified as (

    select
        record.*,
        origins.origins,
        origins.origins > 0
        and record.origins_evaluated = origins.origins
        and record.origins_below_top_past_revenue = 0 as qualifies

    from record
    cross join origins

),

ranked as (

    select
        *,
        row_number() over (
            order by
                qualifies desc,
                mean_ratio desc nulls last,
                definition != 'top_past_revenue' asc,
                sort_order asc
        ) as evidence_rank,
        bool_or(qualifies) over () as any_qualifies

    from qualified

),

final as (

    select
        ranked.definition,
        ranked.description,
        ranked.sort_order,
        ranked.origins,
        ranked.origins_evaluated,
        ranked.mean_ratio,
        ranked.min_ratio,
        ranked.max_ratio,
        ranked.origins_below_top_past_revenue,
        ranked.mean_share,
        ranked.qualifies,
        ranked.evidence_rank,
        case
            when forced.definition is not null then ranked.definition = forced.definition
            when ranked.origins = 0 then ranked.definition = 'insiders_cluster'
            else ranked.evidence_rank = 1
        end as is_chosen,
        case
            when forced.definition is not null
                then case when ranked.definition = forced.definition then 'forced' end
            when ranked.origins = 0
                then case
                        when ranked.definition = 'insiders_cluster' then 'no_evaluation_origin'
                    end
            when ranked.evidence_rank = 1 and ranked.any_qualifies then 'best_evidence'
            when ranked.evidence_rank = 1 then 'best_mean_none_qualified'
        end as chosen_by,
        ranked.as_of,
        ranked.run_id

    from ranked
    cross join forced

)

select * from final
