{#- Every current Insider holds a current membership in the ledger (the ledger may
    hold more: members in their grace period). -#}
-- The model Dagster shows this test's result on (an asset check of it).
{{ config(meta={'dagster': {'ref': {'name': 'customer_membership'}}}) }}
with

segments as (

    select * from {{ ref('customer_membership') }}

),

history as (

    select * from {{ ref('membership_history') }}

)

select segments.customer_id

from segments
left join history
    on segments.customer_id = history.customer_id and history.is_current
where segments.is_insider and history.customer_id is null
