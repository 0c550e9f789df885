{#- A customer is never a member twice at once: each membership ends before the next
    one of the same customer begins. -#}
with

history as (

    select * from {{ ref('membership_history') }}

)

select
    earlier.customer_id,
    earlier.membership_id as earlier_membership,
    later.membership_id as later_membership

from history as earlier
inner join history as later
    on
        earlier.customer_id = later.customer_id
        and earlier.membership_number < later.membership_number
where earlier.valid_to is null or earlier.valid_to > later.valid_from
