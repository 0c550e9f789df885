{#- The customer features at every re-evaluation date (int_evaluation_dates), computed
    exactly as dim_customers computes them at as_of: the input of the monthly
    membership evaluations and of the backtests. -#}
with

lines as (

    select * from {{ ref('int_transaction_lines__rules_applied') }}

),

evaluations as (

    select * from {{ ref('int_evaluation_dates') }}

),

evaluation_lines as (

    select
        lines.customer_id,
        lines.is_guest,
        lines.invoice_no,
        lines.stock_code,
        lines.quantity,
        lines.revenue,
        lines.is_return,
        lines.invoice_at,
        lines.country,
        evaluations.evaluation_date as as_of

    from lines
    inner join evaluations
        on lines.invoice_at < evaluations.evaluation_date
    where
        lines.exclusion_rule is null
        and lines.customer_id is not null

),

{{ customer_feature_ctes('evaluation_lines') }},

final as (

    select
        customer_id || '@' || {{ format_date('as_of') }} as customer_evaluation_id,
        customer_id,
        as_of as evaluation_date,
        country,
        cast(recency_days as integer) as recency_days,
        cast(tenure_days as integer) as tenure_days,
        cast(frequency as integer) as frequency,
        cast(gross_revenue as decimal(18, 4)) as gross_revenue,
        cast(monetary as decimal(18, 4)) as monetary,
        avg_ticket,
        avg_basket_size,
        cast(distinct_products as integer) as distinct_products,
        return_rate,
        cast(purchase_rate as {{ type_double() }}) as purchase_rate

    from features

)

select * from final
