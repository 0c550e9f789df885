with

source as (

    select * from {{ source('ml', 'group_evidence') }}

),

renamed as (

    select
        definition || ':' || metric as group_evidence_id,
        definition,
        metric,
        insiders,
        others,
        insiders_mean,
        others_mean,
        difference,
        ci_low,
        ci_high,
        confidence,
        mann_whitney_u,
        p_value,
        as_of,
        run_id

    from source

)

select * from renamed
