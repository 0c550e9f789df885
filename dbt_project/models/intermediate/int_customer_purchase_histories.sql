{#- Per customer, the purchase history in the form BG/NBD and Gamma-Gamma models read
    (pymc-marketing's CLV module), in days, a purchase being a day with a purchase line:
    at as_of (period 'forecast') and at the backtest cut-off (period 'backtest', with
    what the customer then bought up to as_of, the hold-out). -#}
with

lines as (

    select * from {{ ref('int_transaction_lines__rules_applied') }}

),

evaluations as (

    select * from {{ ref('int_evaluation_dates') }}

),

current_evaluation as (

    select evaluation_date as as_of
    from evaluations
    where is_current

),

periods as (

    select
        evaluations.evaluation_date as period_start,
        case when evaluations.is_current then 'forecast' else 'backtest' end as period,
        case
            when evaluations.is_current
                then cast(
                        evaluations.evaluation_date
                        + to_months({{ var('forecast_horizon_months') }}) as date
                    )
            else current_evaluation.as_of
        end as period_end

    from evaluations
    cross join current_evaluation
    where evaluations.is_current or evaluations.is_backtest_cutoff

),

customer_lines as (

    select
        customer_id,
        invoice_at,
        revenue,
        is_return

    from lines
    where exclusion_rule is null and customer_id is not null

),

purchase_days as (

    select
        customer_id,
        cast(invoice_at as date) as purchase_date,
        sum(revenue) as day_revenue

    from customer_lines
    where not is_return
    group by customer_id, cast(invoice_at as date)

),

histories as (

    select
        periods.period,
        periods.period_start,
        periods.period_end,
        purchase_days.customer_id,
        count(*) - 1 as frequency,
        date_diff('day', min(purchase_days.purchase_date), max(purchase_days.purchase_date))
            as recency,
        date_diff('day', min(purchase_days.purchase_date), periods.period_start) as t,
        sum(purchase_days.day_revenue) as gross_revenue,
        case
            when count(*) > 1
                then (
                    sum(purchase_days.day_revenue)
                    - arg_min(purchase_days.day_revenue, purchase_days.purchase_date)
                ) / (count(*) - 1)
        end as monetary_value

    from purchase_days
    inner join periods
        on purchase_days.purchase_date < periods.period_start
    group by
        periods.period,
        periods.period_start,
        periods.period_end,
        purchase_days.customer_id

),

holdout as (

    select
        customer_lines.customer_id,
        sum(customer_lines.revenue) filter (where not customer_lines.is_return)
            as holdout_gross_revenue,
        sum(customer_lines.revenue) as holdout_net_revenue

    from customer_lines
    inner join periods
        on
            customer_lines.invoice_at >= periods.period_start
            and customer_lines.invoice_at < periods.period_end
    where periods.period = 'backtest'
    group by customer_lines.customer_id

),

final as (

    select
        coalesce(histories.period, 'backtest')
        || ':' || coalesce(histories.customer_id, holdout.customer_id) as customer_period_id,
        coalesce(histories.period, 'backtest') as period,
        coalesce(histories.customer_id, holdout.customer_id) as customer_id,
        histories.customer_id is not null as has_history,
        coalesce(histories.period_start, backtest.period_start) as period_start,
        coalesce(histories.period_end, backtest.period_end) as period_end,
        date_diff(
            'day',
            coalesce(histories.period_start, backtest.period_start),
            coalesce(histories.period_end, backtest.period_end)
        ) as horizon_days,
        cast(histories.frequency as integer) as frequency,
        cast(histories.recency as integer) as recency,
        cast(histories.t as integer) as t,
        cast(histories.gross_revenue as double) as gross_revenue,
        cast(histories.monetary_value as double) as monetary_value,
        case
            when coalesce(histories.period, 'backtest') = 'backtest'
                then cast(coalesce(holdout.holdout_gross_revenue, 0) as double)
        end as holdout_gross_revenue,
        case
            when coalesce(histories.period, 'backtest') = 'backtest'
                then cast(coalesce(holdout.holdout_net_revenue, 0) as double)
        end as holdout_net_revenue

    from histories
    full outer join holdout
        on
            histories.customer_id = holdout.customer_id
            and histories.period = 'backtest'
    left join periods as backtest
        on backtest.period = 'backtest'

)

select * from final
