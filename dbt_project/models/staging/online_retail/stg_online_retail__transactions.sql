with

source as (

    select * from {{ source('online_retail', 'transactions') }}

),

renamed as (

    select
        source_file || ':' || source_line as transaction_line_id,
        invoiceno as invoice_no,
        stockcode as stock_code,
        description,
        quantity,
        invoicedate as invoice_at,
        cast(invoicedate as date) as invoice_date,
        unitprice as unit_price,
        customerid as customer_id,
        country,
        source_file,
        source_line

    from source

)

select * from renamed
