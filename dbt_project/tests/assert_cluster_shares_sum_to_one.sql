{#- Every labelled customer, all revenue and all items belong to exactly one cluster. -#}
with

totals as (

    select
        sum(share_of_customers) as customers_share,
        sum(share_of_revenue) as revenue_share,
        sum(share_of_items) as items_share,
        count(*) as clusters

    from {{ ref('cluster_profile') }}

)

select * from totals
where
    clusters > 0
    and (
        abs(customers_share - 1) > 1e-9
        or abs(revenue_share - 1) > 1e-9
        or abs(items_share - 1) > 1e-9
    )
