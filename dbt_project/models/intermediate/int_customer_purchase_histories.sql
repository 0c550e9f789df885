{#- Per customer, the purchase history in the form BG/NBD and Gamma-Gamma models read
    (pymc-marketing's CLV module), in days, a purchase being a day with a purchase line,
    at every rolling-origin evaluation origin and at the current evaluation (as_of):
    where the expected-revenue model is fitted. -#}
with

lines as (

    select * from {{ ref('int_transaction_lines__rules_applied') }}

),

evaluations as (

    select * from {{ ref('int_evaluation_dates') }}

),

fitted_dates as (

    select
        evaluation_date,
        horizon_end

    from evaluations
    where is_current or is_evaluation_origin

),

purchase_days as (

    select
        customer_id,
        cast(invoice_at as date) as purchase_date,
        sum(revenue) as day_revenue

    from lines
    where
        exclusion_rule is null
        and customer_id is not null
        and not is_return
    group by customer_id, cast(invoice_at as date)

),

histories as (

    select
        fitted_dates.evaluation_date,
        fitted_dates.horizon_end,
        purchase_days.customer_id,
        count(*) - 1 as frequency,
        {{ days_between('min(purchase_days.purchase_date)', 'max(purchase_days.purchase_date)') }}
            as recency,
        {{ days_between('min(purchase_days.purchase_date)', 'fitted_dates.evaluation_date') }}
            as t,
        sum(purchase_days.day_revenue) as gross_revenue,
        case
            when count(*) > 1
                then (
                    sum(purchase_days.day_revenue)
                    - {{ first_by('purchase_days.day_revenue', 'purchase_days.purchase_date') }}
                ) / (count(*) - 1)
        end as monetary_value

    from purchase_days
    inner join fitted_dates
        on purchase_days.purchase_date < fitted_dates.evaluation_date
    group by
        fitted_dates.evaluation_date,
        fitted_dates.horizon_end,
        purchase_days.customer_id

),

final as (

    select
        customer_id || '@' || {{ format_date('evaluation_date') }} as customer_evaluation_id,
        customer_id,
        evaluation_date,
        horizon_end,
        {{ days_between('evaluation_date', 'horizon_end') }} as horizon_days,
        cast(frequency as integer) as frequency,
        cast(recency as integer) as recency,
        cast(t as integer) as t,
        cast(gross_revenue as {{ type_double() }}) as gross_revenue,
        cast(monetary_value as {{ type_double() }}) as monetary_value

    from histories

)

select * from final
