with

source as (

    select * from {{ source('online_retail', 'transactions') }}

),

renamed as (

    -- raw keeps the files' column names (Description, Quantity, Country); DuckDB keeps
    -- that capitalisation unless a column is aliased, hence the self-aliases below.
    select
        source_file || ':' || source_line as transaction_line_id,
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
        source_line

    from source

)

select * from renamed
