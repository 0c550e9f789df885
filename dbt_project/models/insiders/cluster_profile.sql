{#- Questions 2 and 3, how many and what characterises them: one row per cluster,
    its size and value, how it differs from the whole base (ratio to the base), and how
    many of the Insiders (the chosen definition's members) it holds. is_insider marks
    the cluster named Insiders (the most valuable cluster). -#}
with

segments as (

    select * from {{ ref('customer_membership') }}

),

customers as (

    select * from {{ ref('dim_customers') }}

),

labelled as (

    select
        segments.cluster_id,
        segments.cluster_name,
        segments.in_insiders_cluster,
        segments.is_insider,
        segments.as_of,
        customers.recency_days,
        customers.frequency,
        customers.monetary,
        customers.avg_ticket,
        customers.avg_basket_size,
        customers.return_rate,
        customers.purchased_items

    from segments
    inner join customers
        on segments.customer_id = customers.customer_id

),

base as (

    select
        count(*) as customers,
        sum(monetary) as revenue,
        sum(purchased_items) as items,
        {{ mean('recency_days') }} as mean_recency_days,
        {{ mean('frequency') }} as mean_frequency,
        {{ mean('monetary') }} as mean_monetary,
        {{ mean('avg_ticket') }} as mean_avg_ticket,
        {{ mean('avg_basket_size') }} as mean_avg_basket_size,
        {{ mean('return_rate') }} as mean_return_rate

    from labelled

),

clusters as (

    select
        cluster_id,
        min(cluster_name) as cluster_name,
        bool_or(in_insiders_cluster) as is_insider,
        count(*) filter (where is_insider) as insiders_members,
        min(as_of) as as_of,
        count(*) as customers,
        sum(monetary) as revenue,
        cast(sum(purchased_items) as bigint) as items,
        {{ mean('recency_days') }} as mean_recency_days,
        {{ median('recency_days') }} as median_recency_days,
        {{ mean('frequency') }} as mean_frequency,
        {{ median('frequency') }} as median_frequency,
        {{ mean('monetary') }} as mean_monetary,
        {{ median('monetary') }} as median_monetary,
        {{ mean('avg_ticket') }} as mean_avg_ticket,
        {{ median('avg_ticket') }} as median_avg_ticket,
        {{ mean('avg_basket_size') }} as mean_avg_basket_size,
        {{ median('avg_basket_size') }} as median_avg_basket_size,
        {{ mean('return_rate') }} as mean_return_rate,
        {{ median('return_rate') }} as median_return_rate

    from labelled
    group by cluster_id

),

final as (

    select
        clusters.cluster_id,
        clusters.cluster_name,
        clusters.is_insider,
        clusters.as_of,
        clusters.customers,
        {{ ratio('clusters.customers', 'base.customers') }} as share_of_customers,
        clusters.insiders_members,
        {{ ratio('clusters.insiders_members', 'clusters.customers') }} as insiders_members_share,
        cast(clusters.revenue as decimal(18, 4)) as revenue,
        {{ ratio('clusters.revenue', 'nullif(base.revenue, 0)') }} as share_of_revenue,
        clusters.items,
        {{ ratio('clusters.items', 'nullif(base.items, 0)') }} as share_of_items,
        clusters.mean_recency_days,
        clusters.median_recency_days,
        clusters.mean_frequency,
        clusters.median_frequency,
        clusters.mean_monetary,
        clusters.median_monetary,
        clusters.mean_avg_ticket,
        clusters.median_avg_ticket,
        clusters.mean_avg_basket_size,
        clusters.median_avg_basket_size,
        clusters.mean_return_rate,
        clusters.median_return_rate,
        clusters.mean_recency_days / nullif(base.mean_recency_days, 0) as recency_vs_base,
        clusters.mean_frequency / nullif(base.mean_frequency, 0) as frequency_vs_base,
        clusters.mean_monetary / nullif(base.mean_monetary, 0) as monetary_vs_base,
        clusters.mean_avg_ticket / nullif(base.mean_avg_ticket, 0) as ticket_vs_base,
        clusters.mean_avg_basket_size / nullif(base.mean_avg_basket_size, 0) as basket_vs_base,
        clusters.mean_return_rate / nullif(base.mean_return_rate, 0) as return_rate_vs_base

    from clusters
    cross join base

)

select * from final
