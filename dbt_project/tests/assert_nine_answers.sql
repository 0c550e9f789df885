{#- insiders.answers answers exactly the nine questions, numbered 1 to 9, always: before
    the first clustering too (then each answer says what is missing). A question lost
    or doubled by a join returns a row here. -#}
with

answers as (

    select question_number from {{ ref('answers') }}

),

counted as (

    select
        count(*) as answers,
        count(distinct question_number) as questions,
        min(question_number) as first_question,
        max(question_number) as last_question

    from answers

)

select
    answers,
    questions,
    first_question,
    last_question

from counted
where answers != 9 or questions != 9 or first_question != 1 or last_question != 9
