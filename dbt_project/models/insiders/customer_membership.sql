{#- One row per customer at as_of: their cluster (which describes the base) and
    whether they are an Insider, a member of the chosen definition (definition_choice)
    at the current evaluation. Every mart that splits Insiders from the rest reads this. -#}
with

segments as (

    select * from {{ ref('stg_ml__customer_segments') }}

),

members as (

    select * from {{ ref('stg_ml__definition_members') }}

),

choice as (

    select definition from {{ ref('definition_choice') }}
    where is_chosen

),

current_members as (

    select
        members.customer_id,
        members.member_rank

    from members
    inner join choice
        on members.definition = choice.definition
    where members.evaluation_date = members.as_of

),

final as (

    select
        segments.customer_id,
        segments.cluster_id,
        segments.cluster_name,
        segments.is_insider as in_insiders_cluster,
        current_members.customer_id is not null as is_insider,
        current_members.member_rank,
        (select choice.definition from choice) as definition,
        segments.as_of,
        segments.run_id

    from segments
    left join current_members
        on segments.customer_id = current_members.customer_id

)

select * from final
