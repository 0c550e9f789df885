{#- The customer features, as CTEs `aggregated` and `features`: one row per
    (customer_id, as_of) with at least one purchase line before as_of. `lines` names a
    CTE with the columns of int_customer_lines__as_of (as_of being the date the
    features are computed at). dim_customers uses it for the current as-of, and
    int_customer_features__evaluations for every monthly re-evaluation, so both say
    exactly the same thing about a customer at the same date. -#}
{% macro customer_feature_ctes(lines) %}
{%- set min_tenure_days = number_var('purchase_rate_min_tenure_days', minimum=1) %}
{%- set tenure_days = days_between('first_purchase_at', 'as_of') %}
aggregated as (

    select
        customer_id,
        as_of,
        bool_or(is_guest) as is_guest,
        {{ first_by('country', 'invoice_at desc, ' ~ binary_text('country') ~ ' asc', where='not is_return') }}
            as country,
        min(invoice_at) filter (where not is_return) as first_purchase_at,
        max(invoice_at) filter (where not is_return) as last_purchase_at,
        count(distinct invoice_no) filter (where not is_return) as frequency,
        coalesce(sum(revenue) filter (where not is_return), 0) as gross_revenue,
        coalesce(-sum(revenue) filter (where is_return), 0) as returns_value,
        coalesce(sum(quantity) filter (where not is_return), 0) as purchased_items,
        coalesce(-sum(quantity) filter (where is_return), 0) as returned_items,
        count(distinct stock_code) filter (where not is_return) as distinct_products

    from {{ lines }}
    group by customer_id, as_of
    having count(*) filter (where not is_return) > 0

),

features as (

    select
        *,
        {{ days_between('last_purchase_at', 'as_of') }} as recency_days,
        {{ tenure_days }} as tenure_days,
        gross_revenue - returns_value as monetary,
        {{ ratio('gross_revenue', 'frequency') }} as avg_ticket,
        {{ ratio('purchased_items', 'frequency') }} as avg_basket_size,
        case
            when gross_revenue > 0 then {{ ratio('returns_value', 'gross_revenue') }}
            else 0
        end as return_rate,
        {{ ratio('30 * frequency', 'greatest(' ~ tenure_days ~ ', ' ~ min_tenure_days ~ ')') }}
            as purchase_rate

    from aggregated

)
{% endmacro %}
