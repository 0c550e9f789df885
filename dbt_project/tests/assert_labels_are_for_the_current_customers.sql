{#- The clustering's labels belong to the customers they label: every customer of
    marts.dim_customers has one, no label names a customer that is not there, and the
    labels were made as of the same date. A dbt build that changed the customers
    (another as_of, new data) without re-running the clustering fails here: run the
    whole graph (`insiders run`). Before the first clustering there are no labels and
    nothing to contradict. -#}
-- The model Dagster shows this test's result on (an asset check of it).
{{ config(meta={'dagster': {'ref': {'name': 'stg_ml__customer_segments'}}}) }}
{{ config(severity='error') }}

with

customers as (

    select
        customer_id,
        as_of
    from {{ ref('dim_customers') }}

),

labels as (

    select
        customer_id,
        as_of
    from {{ ref('stg_ml__customer_segments') }}

),

has_labels as (

    select count(*) > 0 as any_label from labels

)

select
    coalesce(customers.customer_id, labels.customer_id) as customer_id,
    customers.as_of as customer_as_of,
    labels.as_of as label_as_of,
    case
        when labels.customer_id is null then 'customer has no label'
        when customers.customer_id is null then 'label for a customer not in dim_customers'
        else 'labels made as of another date'
    end as problem

from customers
full outer join labels on customers.customer_id = labels.customer_id
cross join has_labels
where
    has_labels.any_label
    and (
        customers.customer_id is null
        or labels.customer_id is null
        or customers.as_of <> labels.as_of
    )
