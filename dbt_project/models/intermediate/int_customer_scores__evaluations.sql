{#- Every customer known at every re-evaluation date, with what each candidate
    definition of the Insiders ranks on (computed from data before the date only) and
    what the customer then spent in the horizon after it (for the rolling-origin
    evaluation; null where the horizon is not yet over). -#}
{%- set recency_weight_days = number_var('recency_weight_days', minimum=1) %}
{%- set horizon = number_var('forecast_horizon_months', integer=true, minimum=1) %}
with

features as (

    select * from {{ ref('int_customer_features__evaluations') }}

),

evaluations as (

    select * from {{ ref('int_evaluation_dates') }}

),

segments as (

    select * from {{ ref('rfm_segments') }}

),

lines as (

    select
        customer_id,
        invoice_at,
        revenue

    from {{ ref('int_transaction_lines__rules_applied') }}
    where exclusion_rule is null and customer_id is not null

),

windows as (

    select
        features.customer_id,
        features.evaluation_date,
        coalesce(
            sum(lines.revenue) filter (where lines.invoice_at < evaluations.evaluation_date),
            0
        ) as recent_net_revenue,
        coalesce(
            sum(lines.revenue) filter (where lines.invoice_at >= evaluations.evaluation_date),
            0
        ) as horizon_net_revenue

    from features
    inner join evaluations
        on features.evaluation_date = evaluations.evaluation_date
    left join lines
        on
            features.customer_id = lines.customer_id
            and lines.invoice_at >= {{ add_months('evaluations.evaluation_date', '-' ~ horizon) }}
            and evaluations.horizon_end > lines.invoice_at
    group by features.customer_id, features.evaluation_date

),

scored as (

    select
        features.*,
        {{ rfm_score('recency_days', higher_is_better=false, partition_by='evaluation_date') }}
            as r_score,
        {{ rfm_score('frequency', partition_by='evaluation_date') }} as f_score,
        {{ rfm_score('monetary', partition_by='evaluation_date') }} as m_score

    from features

),

final as (

    select
        scored.customer_evaluation_id,
        scored.customer_id,
        scored.evaluation_date,
        scored.monetary as past_net_revenue,
        cast(windows.recent_net_revenue as {{ type_double() }}) as recent_net_revenue,
        cast(scored.monetary as {{ type_double() }})
        * exp(-{{ ratio('scored.recency_days', recency_weight_days) }})
            as recency_weighted_revenue,
        scored.r_score,
        scored.f_score,
        scored.m_score,
        segments.rfm_segment,
        (case when segments.rfm_segment = 'Champions' then 100 else 0 end)
        + scored.r_score + scored.f_score + scored.m_score as rfm_points,
        evaluations.horizon_end <= max(evaluations.evaluation_date) over () as has_full_horizon,
        case
            when evaluations.horizon_end <= max(evaluations.evaluation_date) over ()
                then cast(windows.horizon_net_revenue as {{ type_double() }})
        end as horizon_net_revenue

    from scored
    inner join evaluations
        on scored.evaluation_date = evaluations.evaluation_date
    inner join windows
        on
            scored.customer_id = windows.customer_id
            and scored.evaluation_date = windows.evaluation_date
    left join segments
        on
            scored.r_score between segments.r_score_min and segments.r_score_max
            and cast(ceil((scored.f_score + scored.m_score) / 2.0) as integer)
            between segments.fm_score_min and segments.fm_score_max

)

select * from final
