{#- The kept lines of identified customers (and of guest pseudo-customers under the
    per_invoice policy) strictly before the as-of date: the only input of every
    customer feature, so a past as-of gives what the warehouse said then. -#}
with

lines as (

    select * from {{ ref('int_transaction_lines__rules_applied') }}

),

as_of as (

    select {{ as_of_date() }} as as_of

),

final as (

    select
        lines.transaction_line_id,
        lines.customer_id,
        lines.is_guest,
        lines.invoice_no,
        lines.stock_code,
        lines.quantity,
        lines.revenue,
        lines.is_return,
        lines.invoice_at,
        lines.country,
        as_of.as_of

    from lines
    cross join as_of
    where
        lines.exclusion_rule is null
        and lines.customer_id is not null
        and lines.invoice_at < as_of.as_of

)

select * from final
