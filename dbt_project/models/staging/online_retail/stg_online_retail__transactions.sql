with

source as (

    select * from {{ source('online_retail', 'transactions') }}
    {{ committed_loads() }}

),

renamed as (

    -- raw keeps the files' column names (Description, Quantity, Country); DuckDB keeps
    -- that capitalisation unless a column is aliased, hence the self-aliases below.
    select
        -- A refund line is made from its record's refund fields: same file and line.
        source_file || ':' || source_line
        || case when line_kind = 'refund' then ':refund' else '' end as transaction_line_id,
        invoiceno as invoice_no,
        stockcode as stock_code,
        description as description,  -- noqa: AL09
        quantity as quantity,  -- noqa: AL09
        invoicedate as invoice_at,
        cast(invoicedate as date) as invoice_date,
        unitprice as unit_price,
        customerid as customer_id,
        country as country,  -- noqa: AL09
        source_file,
        source_line,
        line_kind

    from source

)

select * from renamed
