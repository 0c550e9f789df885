{#- The Insiders' re-evaluation calendar: as_of, then one month earlier each step,
    down to the first month with a purchase. cycles_before_as_of = 0 is the current
    evaluation. A rolling-origin evaluation origin is a date with a full horizon
    (var forecast_horizon_months) of data after it, up to as_of, and at least
    var evaluation_min_history_months of purchases before it. -#}
{%- set min_history = number_var('evaluation_min_history_months', integer=true, minimum=0) %}
{%- set horizon = number_var('forecast_horizon_months', integer=true, minimum=1) %}
with

lines as (

    select * from {{ ref('int_transaction_lines__rules_applied') }}

),

as_of as (

    select {{ as_of_date() }} as as_of

),

first_purchase as (

    select cast(min(invoice_at) as date) as first_purchase_date
    from lines
    where
        exclusion_rule is null
        and customer_id is not null
        and not is_return

),

cycles as (

    select
        as_of.as_of,
        first_purchase.first_purchase_date,
        steps.cycles_before_as_of

    from as_of
    cross join first_purchase
    {{ join_integer_series(
        0,
        'greatest(' ~ months_between('first_purchase.first_purchase_date', 'as_of.as_of') ~ ', 0)',
        'steps',
        'cycles_before_as_of'
    ) }}

),

dated as (

    select
        cycles_before_as_of,
        first_purchase_date,
        {{ add_months('as_of', '-cycles_before_as_of') }} as evaluation_date

    from cycles

),

final as (

    select
        evaluation_date,
        cast(cycles_before_as_of as integer) as cycles_before_as_of,
        cycles_before_as_of = 0 as is_current,
        {{ add_months('evaluation_date', horizon) }} as horizon_end,
        cycles_before_as_of >= {{ horizon }}
        and evaluation_date >= {{ add_months('first_purchase_date', min_history) }}
            as is_evaluation_origin

    from dated
    where evaluation_date > first_purchase_date

)

select * from final
