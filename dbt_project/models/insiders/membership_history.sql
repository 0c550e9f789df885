{#- Question 7, what removes a person: the membership ledger. A customer enters at the
    first re-evaluation where they qualify (are among the members of the chosen
    definition, insiders.definition_choice, chosen with the data before that date). A member who
    stops qualifying stays var('membership_grace_cycles') re-evaluations more and leaves
    at the next one still failed; qualifying again within the grace keeps the same
    membership. One row per membership: valid_from (included) to valid_to (excluded,
    null while current). -#}
{%- set grace = number_var('membership_grace_cycles', integer=true, minimum=0) %}
with

evaluations as (

    select
        members.customer_id,
        members.evaluation_date,
        members.definition

    from {{ ref('stg_ml__definition_members') }} as members
    inner join {{ ref('definition_choice') }} as choice
        on members.definition = choice.definition and choice.is_chosen

),

evaluation_dates as (

    select
        evaluation_date,
        row_number() over (order by evaluation_date) as evaluation_number

    from (select distinct evaluation_date from evaluations) as distinct_dates

),

qualifying as (

    select
        evaluations.customer_id,
        evaluations.evaluation_date,
        evaluations.definition,
        evaluation_dates.evaluation_number,
        evaluation_dates.evaluation_number - lag(evaluation_dates.evaluation_number) over (
            partition by evaluations.customer_id
            order by evaluation_dates.evaluation_number
        ) as cycles_since_last_qualified

    from evaluations
    inner join evaluation_dates
        on evaluations.evaluation_date = evaluation_dates.evaluation_date

),

numbered as (

    select
        *,
        sum(
            case
                when
                    cycles_since_last_qualified is null
                    or cycles_since_last_qualified > {{ grace }} + 1
                    then 1
                else 0
            end
        ) over (
            partition by customer_id
            order by evaluation_number
            rows between unbounded preceding and current row
        ) as membership_number

    from qualifying

),

memberships as (

    select
        customer_id,
        membership_number,
        min(evaluation_date) as valid_from,
        max(evaluation_date) as last_qualified_on,
        max(evaluation_number) as last_qualified_number,
        count(*) as qualifying_evaluations,
        {{ first_by('definition', 'evaluation_number') }} as entry_definition

    from numbered
    group by customer_id, membership_number

),

final as (

    select
        memberships.customer_id || ':' || memberships.membership_number as membership_id,
        memberships.customer_id,
        cast(memberships.membership_number as integer) as membership_number,
        memberships.valid_from,
        exits.evaluation_date as valid_to,
        exits.evaluation_date is null as is_current,
        memberships.last_qualified_on,
        cast(memberships.qualifying_evaluations as integer) as qualifying_evaluations,
        case
            when memberships.membership_number = 1 then 'first_qualified'
            else 'qualified_again'
        end as entry_reason,
        'selected by ' || memberships.entry_definition || ' at the '
        || {{ format_date('memberships.valid_from') }} || ' re-evaluation'
            as entry_detail,
        case when exits.evaluation_date is not null then 'no_longer_qualified' end
            as exit_reason,
        case
            when exits.evaluation_date is not null
                then
                    'not selected at '
                    || ({{ grace }} + 1)
                    || ' consecutive re-evaluations after '
                    || {{ format_date('memberships.last_qualified_on') }}
                    || ' (grace: {{ grace }})'
        end as exit_detail

    from memberships
    left join evaluation_dates as exits
        on
            exits.evaluation_number
            = memberships.last_qualified_number + {{ grace }} + 1

)

select * from final
