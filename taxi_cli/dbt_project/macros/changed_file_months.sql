{#
  What the incremental fact_trips rebuilds: the file months whose raw rows changed.

  Each fact row carries `source_fingerprint`, the fingerprint of its service's raw rows of
  that file month when it was built: their count and the XOR of the first 60 bits of
  their unique_row_id (md5 of the row). A month that was loaded, reloaded with other
  content, or is new since the last build has a different (or no) fingerprint; that
  month's partition is rebuilt and no other. The raw side reads two columns of the raw
  tables (unique_row_id, filename), not the rows. A `--test-run` build (a sample) marks
  its fingerprints, so the next full build rebuilds those months.
#}
{% macro source_fingerprints() -%}
{#- a --test-run build holds a sample: its months never match a full build's #}
select
    service_type,
    file_month,
    {{ fingerprint_agg('unique_row_id') }}
        {%- if var('is_test_run', false) %} || ':test-run'{% endif %} as source_fingerprint
from (
    {%- for taxi in ['green', 'yellow'] %}
    select
        '{{ taxi | capitalize }}' as service_type,
        {{ file_month_of('filename') }} as file_month,
        unique_row_id
    from ({{ tripdata_source(taxi) }}) as raw_{{ taxi }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
) as raw_rows
group by service_type, file_month
{%- endmacro %}

{% macro fingerprint_agg(column) -%}
    {{ return(adapter.dispatch('fingerprint_agg', 'taxi_rides_ny')(column)) }}
{%- endmacro %}

{% macro default__fingerprint_agg(column) -%}
    cast(count(*) as text) || ':' || cast(
        coalesce(bit_xor(('x' || substr({{ column }}, 1, 15))::bit(60)::bigint), 0) as text
    )
{%- endmacro %}

{% macro bigquery__fingerprint_agg(column) -%}
    cast(count(*) as string) || ':' || cast(
        coalesce(bit_xor(cast(concat('0x', substr({{ column }}, 1, 15)) as int64)), 0) as string
    )
{%- endmacro %}

{# The changed months as 'YYYY-MM-DD' strings (run at execution time; [] at parse time). #}
{% macro changed_file_months() -%}
    {%- set columns = adapter.get_columns_in_relation(this) | map(attribute='name')
        | map('lower') | list -%}
    {%- if 'source_fingerprint' not in columns -%}
        {{ exceptions.raise_compiler_error(
            this ~ " was built before fact_trips became incremental (no source_fingerprint"
            ~ " column): rebuild it once with `taxi-cli transform --full-refresh`"
        ) }}
    {%- endif -%}
    {%- set query -%}
        with current_files as (
            {{ source_fingerprints() }}
        ),
        built_files as (
            select distinct service_type, file_month, source_fingerprint from {{ this }}
        )
        select distinct cast(coalesce(current_files.file_month, built_files.file_month)
            as {{ dbt.type_string() }}) as file_month
        from current_files
        full outer join built_files
            on current_files.service_type = built_files.service_type
            and current_files.file_month = built_files.file_month
            and current_files.source_fingerprint = built_files.source_fingerprint
        where current_files.file_month is null or built_files.file_month is null
        order by 1
    {%- endset -%}
    {%- set months = run_query(query).columns[0].values() | list -%}
    {{ log("taxi-cli: fact_trips: rebuilding file months " ~ (months | join(', ') or 'none'), info=true) }}
    {{ return(months) }}
{%- endmacro %}
