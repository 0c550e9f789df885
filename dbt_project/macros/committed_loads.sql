{#- The rows of raw that a committed load wrote. DuckDB and PostgreSQL load in one
    transaction: every row there is committed, and this is empty. On Spark a load
    writes its rows as a new `load_id` partition and commits by switching
    raw.loaded_files to a ledger that names it (orchestration/spark_loader.py): rows
    of a load killed before that switch are not the ledger's until the next load
    removes them, so a model reading raw keeps only the ledger's load ids. -#}
{% macro committed_loads() -%}
    {{ return(adapter.dispatch('committed_loads')()) }}
{%- endmacro %}

{% macro default__committed_loads() -%}
{%- endmacro %}

{% macro spark__committed_loads() -%}
    where load_id in (select load_id from {{ source('online_retail', 'loaded_files') }})
{%- endmacro %}
