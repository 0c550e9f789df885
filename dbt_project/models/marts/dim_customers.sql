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

{{ customer_feature_ctes('lines') }},

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
        cast(segmented.purchase_rate as {{ type_double() }}) as purchase_rate,
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
