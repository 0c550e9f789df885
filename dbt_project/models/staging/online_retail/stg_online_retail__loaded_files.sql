with

source as (

    select * from {{ source('online_retail', 'loaded_files') }}

),

renamed as (

    select
        source_file,
        file_sha256,
        layout,
        encoding,
        raw_lines,
        loaded_rows,
        quarantined_rows,
        loaded_at

    from source

)

select * from renamed
