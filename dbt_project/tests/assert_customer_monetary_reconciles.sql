{#- The sum of dim_customers.monetary (and gross_revenue) equals the net (and gross)
    revenue of the customer lines of fct_transactions before as_of. The only customer
    lines without a customer row are those of customers who returned goods but bought
    nothing before as_of; a purchase line without a row is a failure too. -#}
-- The model Dagster shows this test's result on (an asset check of it).
{{ config(meta={'dagster': {'ref': {'name': 'dim_customers'}}}) }}
with

customers as (

    select * from {{ ref('dim_customers') }}

),

as_of as (

    select {{ as_of_date() }} as as_of

),

customer_lines as (

    select
        fct.customer_id,
        fct.revenue,
        fct.is_return
    from {{ ref('fct_transactions') }} as fct
    cross join as_of
    where fct.customer_id is not null and fct.invoice_at < as_of.as_of

),

line_owners as (

    select
        customer_lines.revenue,
        customer_lines.is_return,
        customers.customer_id is not null as has_customer_row
    from customer_lines
    left join customers
        on customer_lines.customer_id = customers.customer_id

),

dim_totals as (

    select
        coalesce(sum(customers.monetary), 0) as dim_monetary,
        coalesce(sum(customers.gross_revenue), 0) as dim_gross
    from customers

),

fct_totals as (

    select
        coalesce(sum(line_owners.revenue) filter (
            where line_owners.has_customer_row
        ), 0) as fct_net_revenue,
        coalesce(sum(line_owners.revenue) filter (
            where line_owners.has_customer_row and not line_owners.is_return
        ), 0) as fct_gross_revenue,
        count(*) filter (
            where not line_owners.has_customer_row and not line_owners.is_return
        ) as purchases_without_row
    from line_owners

)

select
    dim_totals.dim_monetary,
    dim_totals.dim_gross,
    fct_totals.fct_net_revenue,
    fct_totals.fct_gross_revenue,
    fct_totals.purchases_without_row
from dim_totals
cross join fct_totals
where
    dim_totals.dim_monetary != fct_totals.fct_net_revenue
    or dim_totals.dim_gross != fct_totals.fct_gross_revenue
    or fct_totals.purchases_without_row > 0
