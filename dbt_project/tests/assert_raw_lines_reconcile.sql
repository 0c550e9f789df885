{#- For every loaded file: raw lines = loaded + quarantined, and the ledger's counts
    are the rows actually present in raw (records and the refund lines made from them
    counted apart). Returns the files that do not add up. -#}
-- The model Dagster shows this test's result on (an asset check of it).
{{ config(meta={'dagster': {'ref': {'name': 'stg_online_retail__transactions'}}}) }}
with

files as (

    select * from {{ ref('stg_online_retail__loaded_files') }}

),

loaded as (

    select
        source_file,
        count(*) filter (where line_kind = 'record') as present_rows,
        count(*) filter (where line_kind = 'refund') as present_refunds
    from {{ ref('stg_online_retail__transactions') }}
    group by source_file

),

quarantined as (

    select
        source_file,
        count(*) as present_rows
    from {{ ref('stg_online_retail__quarantined_rows') }}
    group by source_file

)

select
    files.source_file,
    files.raw_lines,
    files.loaded_rows,
    files.quarantined_rows,
    files.refund_rows,
    coalesce(loaded.present_rows, 0) as present_loaded,
    coalesce(loaded.present_refunds, 0) as present_refunds,
    coalesce(quarantined.present_rows, 0) as present_quarantined
from files
left join loaded on files.source_file = loaded.source_file
left join quarantined on files.source_file = quarantined.source_file
where
    files.raw_lines != files.loaded_rows + files.quarantined_rows
    or files.loaded_rows != coalesce(loaded.present_rows, 0)
    or files.refund_rows != coalesce(loaded.present_refunds, 0)
    or files.quarantined_rows != coalesce(quarantined.present_rows, 0)
