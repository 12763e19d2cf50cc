{#
  The raw trips of one taxi type, as loaded by `taxi-cli load-pg` / `load-bq`.

  A user may load only green (or only yellow): a missing table is read as an empty
  relation with the loaders' columns and types, so that the union in fact_trips still
  builds. The source() call stays, so lineage and `dbt ls` are unchanged.
#}
{% macro tripdata_source(taxi) -%}
    {%- set src = source('raw', taxi ~ '_tripdata') -%}
    {%- if execute and not relation_exists(src) -%}
        {{ log("taxi-cli: " ~ src ~ " does not exist; staging it as empty", info=true) }}
        {{ empty_tripdata(taxi) }}
    {%- else -%}
        select * from {{ src }}
    {%- endif -%}
{%- endmacro %}

{% macro relation_exists(src) -%}
    {%- set found = adapter.get_relation(
        database=src.database, schema=src.schema, identifier=src.identifier
    ) -%}
    {{ return(found is not none) }}
{%- endmacro %}

{# Column kinds of the loaded tables (taxi_cli/catalog.py; ids are text, as in the course). #}
{% macro raw_tripdata_columns(taxi) -%}
    {%- set prefix = 'lpep' if taxi == 'green' else 'tpep' -%}
    {%- set columns = [
        ('unique_row_id', 'text'), ('filename', 'text'), ('vendorid', 'text'),
        (prefix ~ '_pickup_datetime', 'timestamp'), (prefix ~ '_dropoff_datetime', 'timestamp'),
        ('store_and_fwd_flag', 'text'), ('ratecodeid', 'text'), ('pulocationid', 'text'),
        ('dolocationid', 'text'), ('passenger_count', 'int'), ('trip_distance', 'float'),
        ('fare_amount', 'float'), ('extra', 'float'), ('mta_tax', 'float'),
        ('tip_amount', 'float'), ('tolls_amount', 'float'),
        ('improvement_surcharge', 'float'), ('total_amount', 'float'),
        ('payment_type', 'int'), ('congestion_surcharge', 'float'),
    ] -%}
    {%- if taxi == 'green' -%}
        {%- do columns.append(('ehail_fee', 'float')) -%}
        {%- do columns.append(('trip_type', 'int')) -%}
    {%- endif -%}
    {{ return(columns) }}
{%- endmacro %}

{% macro empty_tripdata(taxi) -%}
    {%- set types = {
        'text': dbt.type_string(), 'timestamp': wallclock_type(),
        'int': dbt.type_int(), 'float': dbt.type_float(),
    } -%}
    select
    {%- for name, kind in raw_tripdata_columns(taxi) %}
        cast(null as {{ types[kind] }}) as {{ name }}{{ "," if not loop.last }}
    {%- endfor %}
    limit 0
{%- endmacro %}
