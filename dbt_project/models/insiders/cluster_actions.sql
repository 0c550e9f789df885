{#- Question 9, what actions would raise revenue: per cluster, the action of the
    highest-priority rule of seed cluster_action_rules whose pattern matches its name. -#}
with

profile as (

    select * from {{ ref('cluster_profile') }}

),

actions as (

    select * from {{ ref('cluster_action_rules') }}

),

matched as (

    select
        profile.cluster_id,
        profile.cluster_name,
        profile.is_insider,
        profile.customers,
        profile.share_of_customers,
        profile.share_of_revenue,
        profile.mean_recency_days,
        profile.mean_frequency,
        profile.mean_monetary,
        actions.cluster_name_pattern as matched_pattern,
        actions.recommended_action,
        actions.why,
        row_number() over (
            partition by profile.cluster_id
            order by actions.priority, {{ binary_text('actions.cluster_name_pattern') }}
        ) as rule_rank

    from profile
    inner join actions
        on profile.cluster_name like actions.cluster_name_pattern

),

final as (

    select
        cluster_id,
        cluster_name,
        is_insider,
        customers,
        share_of_customers,
        share_of_revenue,
        mean_recency_days,
        mean_frequency,
        mean_monetary,
        matched_pattern,
        recommended_action,
        why

    from matched
    where rule_rank = 1

)

select * from final
