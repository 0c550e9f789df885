{#- insiders.definition_choice chooses exactly one definition once the evaluation has
    run (before, the ml tables are empty and it has no row); a var insiders_definition
    that names no evaluated definition chooses none and fails here, naming the value. -#}
with

chosen as (

    select
        count(*) filter (where is_chosen) as chosen,
        count(*) as definitions
    from {{ ref('definition_choice') }}

)

select
    chosen.chosen,
    'var insiders_definition = '
    || coalesce(
        {%- set forced = definition_var() %}
        {{ "'" ~ forced ~ "'" if forced else 'null' }},
        'null'
    )
    || ': exactly one definition must be chosen' as problem

from chosen
where chosen.definitions > 0 and chosen.chosen != 1
