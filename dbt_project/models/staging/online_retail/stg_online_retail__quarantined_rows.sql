with

source as (

    select * from {{ source('online_retail', 'quarantined_rows') }}
    {{ committed_loads() }}

),

renamed as (

    select
        source_file || ':' || source_line as quarantined_row_id,
        source_file,
        source_line,
        raw_record,
        reason

    from source

)

select * from renamed
