{#- One row per loaded file. is_synthetic marks synthetic demo data (the files
    models_py.demo_data writes, which the loader recognises): every answer made from
    them says so (insiders.kpis, insiders.answers, the report). -#}
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
        loaded_at,
        is_synthetic,
        coalesce(refund_rows, 0) as refund_rows,
        coalesce(mapping_fingerprint, '') as mapping_fingerprint

    from source

)

select * from renamed
