{#- Every loaded line is either in fct_transactions or in fct_transaction_exclusions,
    never both, never neither: counts and net revenue add up. -#}
-- The model Dagster shows this test's result on (an asset check of it).
{{ config(meta={'dagster': {'ref': {'name': 'fct_transactions'}}}) }}
with

loaded as (

    select
        count(*) as line_count,
        sum(quantity * unit_price) as revenue
    from {{ ref('stg_online_retail__transactions') }}

),

kept as (

    select
        count(*) as line_count,
        sum(revenue) as revenue
    from {{ ref('fct_transactions') }}

),

excluded as (

    select
        count(*) as line_count,
        sum(revenue) as revenue
    from {{ ref('fct_transaction_exclusions') }}

),

costs as (

    select
        sum(excluded_lines) as line_count,
        sum(excluded_revenue) as revenue
    from {{ ref('fct_exclusion_rule_costs') }}

)

select
    loaded.line_count as loaded_lines,
    kept.line_count as kept_lines,
    excluded.line_count as excluded_lines,
    loaded.revenue as loaded_revenue,
    kept.revenue as kept_revenue,
    excluded.revenue as excluded_revenue
from loaded, kept, excluded, costs
where
    loaded.line_count != kept.line_count + coalesce(excluded.line_count, 0)
    or coalesce(loaded.revenue, 0) != coalesce(kept.revenue, 0) + coalesce(excluded.revenue, 0)
    or coalesce(excluded.line_count, 0) != coalesce(costs.line_count, 0)
    or coalesce(excluded.revenue, 0) != coalesce(costs.revenue, 0)
