{#- The lines a business rule removed, with the rule: what each rule costs. -#}
with

lines as (

    select * from {{ ref('int_transaction_lines__rules_applied') }} as rules_applied
    {{ new_or_changed_files_only('rules_applied') }}

),

final as (

    select
        transaction_line_id,
        exclusion_rule,
        invoice_no,
        stock_code,
        description,
        quantity,
        unit_price,
        revenue,
        invoice_at,
        customer_id,
        is_guest,
        is_return,
        country,
        source_file,
        source_line,
        file_loaded_at,
        rules_version

    from lines
    where exclusion_rule is not null

)

select * from final
