{#- Per re-evaluation date: members (ledger), who entered, who left, who stayed, and
    how many members qualified on the day (the rest are in their grace period). -#}
with

history as (

    select * from {{ ref('membership_history') }}

),

evaluations as (

    select members.evaluation_date

    from {{ ref('stg_ml__definition_members') }} as members
    inner join {{ ref('definition_choice') }} as choice
        on members.definition = choice.definition and choice.is_chosen

),

evaluation_dates as (

    select
        evaluation_date,
        count(*) as qualifying

    from evaluations
    group by evaluation_date

),

movement as (

    select
        evaluation_dates.evaluation_date,
        evaluation_dates.qualifying,
        count(history.membership_id) filter (
            where
            history.valid_from <= evaluation_dates.evaluation_date
            and (
                history.valid_to is null
                or history.valid_to > evaluation_dates.evaluation_date
            )
        ) as members,
        count(history.membership_id) filter (
            where history.valid_from = evaluation_dates.evaluation_date
        ) as entered,
        count(history.membership_id) filter (
            where history.valid_to = evaluation_dates.evaluation_date
        ) as left_program

    from evaluation_dates
    left join history
        on
            evaluation_dates.evaluation_date >= history.valid_from
            and (
                history.valid_to is null
                or evaluation_dates.evaluation_date <= history.valid_to
            )
    group by evaluation_dates.evaluation_date, evaluation_dates.qualifying

),

final as (

    select
        evaluation_date,
        cast(members as integer) as members,
        cast(entered as integer) as entered,
        cast(left_program as integer) as left_program,
        cast(members - entered as integer) as stayed,
        cast(qualifying as integer) as qualifying,
        cast(members - qualifying as integer) as in_grace

    from movement

)

select * from final
