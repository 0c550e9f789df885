{#- insiders.definition_choice chooses exactly one definition; a var
    insiders_definition that names no evaluated definition chooses none and fails here,
    naming the forced value. -#}
with

chosen as (

    select count(*) filter (where is_chosen) as chosen
    from {{ ref('definition_choice') }}

)

select
    chosen.chosen,
    'var insiders_definition = '
    || coalesce(
        {%- set forced = var('insiders_definition', none) %}
        {{ "'" ~ forced ~ "'" if forced else 'null' }},
        'null'
    )
    || ': exactly one definition must be chosen' as problem

from chosen
where chosen.chosen != 1
