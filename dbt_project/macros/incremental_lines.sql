{#- Incremental marts of invoice lines (fct_transactions, fct_transaction_exclusions).

    A daily run adds one file to raw; rebuilding every line of every file for it costs
    a scan of all of them (54 M lines at 100x the real data). Each line carries the
    load of its file (file_loaded_at) and the version of the business rules it was
    classified under (rules_version): an incremental build selects only the lines of
    files whose load or rules version is not in the table yet, and its post-hook
    deletes the rows whose file was removed, re-loaded or classified under other rules.
    So the table equals a full rebuild after any load, reload, removal or rule change.
    A change to the models' SQL itself still needs `dbt build --full-refresh`. -#}

{#- The business rules the lines are classified under, as one hash: the exclusion seeds
    and the vars that change a line's rule or customer. -#}
{% macro rules_version() -%}
    (
        select md5(concat_ws(
            '|',
            (select {{ ordered_string_agg('customer_id', "','", binary_text('customer_id')) }}
                from {{ ref('excluded_customers') }}),
            (select {{ ordered_string_agg('country', "','", binary_text('country')) }}
                from {{ ref('excluded_countries') }}),
            (select {{ ordered_string_agg('stock_code', "','", binary_text('stock_code')) }}
                from {{ ref('excluded_stock_codes') }}),
            '{{ number_var("unit_price_floor", minimum=0) }}',
            '{{ guest_policy() }}'
        ))
    )
{%- endmacro %}

{#- On an incremental build, keep only the lines of files not yet in the table under
    their current load and rules. A table built before these columns existed gets
    every line (its columns are added by on_schema_change). -#}
{% macro new_or_changed_files_only(lines) -%}
    {%- if is_incremental() and 'file_loaded_at' in (
        adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list
    ) %}
    where {{ lines }}.source_file in (
        select loaded.source_file
        from {{ ref('stg_online_retail__loaded_files') }} as loaded
        where not exists (
            select 1
            from {{ this }} as built
            where
                built.source_file = loaded.source_file
                and built.file_loaded_at = loaded.loaded_at
                and built.rules_version = {{ rules_version() }}
        )
    )
    {%- endif %}
{%- endmacro %}

{#- The post-hook: remove rows of files no longer loaded as they were, or classified
    under rules that changed since. -#}
{% macro delete_stale_lines() -%}
    {{ return(adapter.dispatch('delete_stale_lines')()) }}
{%- endmacro %}

{#- Spark: a Parquet table has no DELETE; the table is partitioned by source_file
    (dbt_project.yml) and an incremental build overwrote (insert_overwrite, dynamic) the
    partitions of the files it selected AND for which it produced rows: every partition
    it overwrote holds lines of the current load and rules only. A partition it did not
    overwrite is stale when its file is no longer loaded as its lines say (removed or
    re-loaded), or when its lines were classified under other rules: a file re-selected
    by a rule change (or a reload) that now yields no row at all keeps its old lines
    otherwise. Drop those partitions, one statement each, after the insert (run here;
    the hook itself is then empty, which dbt skips), so readers never miss a file that
    still has lines. A file's name reaches the statement as a Spark string literal,
    escaped (\\ and \'), and only names read from the table itself. -#}
{% macro spark__delete_stale_lines() -%}
    {#- ref'd outside the execute guard, so dbt sees the dependencies when it parses
        (those of rules_version too, which the incremental filter uses). -#}
    {%- set loaded_files = ref('stg_online_retail__loaded_files') -%}
    {%- set _rules = rules_version() -%}
    {%- if execute and model.config.materialized == 'incremental' -%}
        {%- set stale = run_query(
            "select distinct built.source_file from " ~ this ~ " as built"
            ~ " left anti join (select source_file, loaded_at, " ~ _rules ~ " as rules_version"
            ~ " from " ~ loaded_files ~ ") as loaded"
            ~ " on loaded.source_file = built.source_file"
            ~ " and loaded.loaded_at = built.file_loaded_at"
            ~ " and loaded.rules_version = built.rules_version"
        ) -%}
        {%- for row in stale.rows -%}
            {%- set literal = "'" ~ (row[0] | replace('\\', '\\\\') | replace("'", "\\'")) ~ "'" -%}
            {%- do run_query(
                "alter table " ~ this ~ " drop if exists partition (source_file = " ~ literal ~ ")"
            ) -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}

{% macro default__delete_stale_lines() -%}
    delete from {{ this }}
    where
        rules_version <> {{ rules_version() }}
        or not exists (
            select 1
            from {{ ref('stg_online_retail__loaded_files') }} as loaded
            where
                loaded.source_file = {{ this }}.source_file
                and loaded.loaded_at = {{ this }}.file_loaded_at
        )
{%- endmacro %}
