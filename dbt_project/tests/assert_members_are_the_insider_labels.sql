{#- insiders.members holds exactly the customers marked is_insider in
    customer_membership (the chosen definition's members at as_of), and kpis and
    cluster_profile count the same number. -#}
-- The model Dagster shows this test's result on (an asset check of it).
{{ config(meta={'dagster': {'ref': {'name': 'kpis'}}}) }}
with

labelled as (

    select customer_id from {{ ref('customer_membership') }}
    where is_insider

),

members as (

    select customer_id from {{ ref('members') }}

),

mismatches as (

    select coalesce(labelled.customer_id, members.customer_id) as customer_id
    from labelled
    full outer join members
        on labelled.customer_id = members.customer_id
    where labelled.customer_id is null or members.customer_id is null

),

counts as (

    select
        (select count(*) from members) as member_count,
        (select coalesce(sum(kpis.insiders), 0) from {{ ref('kpis') }} as kpis) as kpi_count,
        (
            select coalesce(sum(profile.insiders_members), 0)
            from {{ ref('cluster_profile') }} as profile
        ) as profile_count

)

select
    'missing or extra member' as problem,
    mismatches.customer_id
from mismatches
union all
select
    'counts disagree' as problem,
    null as customer_id
from counts
where
    counts.member_count != counts.kpi_count
    or counts.member_count != counts.profile_count
