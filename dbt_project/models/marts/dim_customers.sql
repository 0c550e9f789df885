{#- One row per customer with at least one purchase line before the as-of date:
    RFM, ticket, basket and returns. The clustering's input and BI's main table, so
    its columns are a contract. -#}
with

lines as (

    select * from {{ ref('int_customer_lines__as_of') }}

),

segments as (

    select * from {{ ref('rfm_segments') }}

),

aggregated as (

    select
        customer_id,
        bool_or(is_guest) as is_guest,
        first(country order by invoice_at desc, country asc) filter (where not is_return)
            as country,
        min(invoice_at) filter (where not is_return) as first_purchase_at,
        max(invoice_at) filter (where not is_return) as last_purchase_at,
        any_value(as_of) as as_of,
        count(distinct invoice_no) filter (where not is_return) as frequency,
        coalesce(sum(revenue) filter (where not is_return), 0) as gross_revenue,
        coalesce(-sum(revenue) filter (where is_return), 0) as returns_value,
        coalesce(sum(quantity) filter (where not is_return), 0) as purchased_items,
        coalesce(-sum(quantity) filter (where is_return), 0) as returned_items,
        count(distinct stock_code) filter (where not is_return) as distinct_products

    from lines
    group by customer_id
    having count(*) filter (where not is_return) > 0

),

features as (

    select
        *,
        date_diff('day', cast(last_purchase_at as date), as_of) as recency_days,
        date_diff('day', cast(first_purchase_at as date), as_of) as tenure_days,
        gross_revenue - returns_value as monetary,
        cast(gross_revenue as double) / frequency as avg_ticket,
        cast(purchased_items as double) / frequency as avg_basket_size,
        case
            when
                gross_revenue > 0
                then cast(returns_value as double) / cast(gross_revenue as double)
            else 0
        end as return_rate,
        30.0 * frequency / greatest(
            date_diff('day', cast(first_purchase_at as date), as_of),
            {{ var('purchase_rate_min_tenure_days') }}
        ) as purchase_rate

    from aggregated

),

scored as (

    select
        *,
        {{ rfm_score('recency_days', higher_is_better=false) }} as r_score,
        {{ rfm_score('frequency') }} as f_score,
        {{ rfm_score('monetary') }} as m_score

    from features

),

segmented as (

    select
        scored.*,
        cast(ceil((scored.f_score + scored.m_score) / 2.0) as integer) as fm_score

    from scored

),

final as (

    select
        segmented.customer_id,
        segmented.is_guest,
        segmented.country,
        segmented.first_purchase_at,
        segmented.last_purchase_at,
        segmented.as_of,
        cast(segmented.recency_days as integer) as recency_days,
        cast(segmented.tenure_days as integer) as tenure_days,
        cast(segmented.frequency as integer) as frequency,
        cast(segmented.gross_revenue as decimal(18, 4)) as gross_revenue,
        cast(segmented.returns_value as decimal(18, 4)) as returns_value,
        cast(segmented.monetary as decimal(18, 4)) as monetary,
        segmented.avg_ticket,
        segmented.avg_basket_size,
        cast(segmented.purchased_items as bigint) as purchased_items,
        cast(segmented.distinct_products as integer) as distinct_products,
        cast(segmented.returned_items as bigint) as returned_items,
        segmented.return_rate,
        cast(segmented.purchase_rate as double) as purchase_rate,
        segmented.r_score,
        segmented.f_score,
        segmented.m_score,
        segmented.fm_score,
        segments.rfm_segment

    from segmented
    left join segments
        on
            segmented.r_score between segments.r_score_min and segments.r_score_max
            and segmented.fm_score between segments.fm_score_min and segments.fm_score_max

)

select * from final
