{#
  Every staged trip of both services whose pickup and dropoff zones are known: inner
  joins to dim_zones without the 'Unknown' borough (ids 264/265), as in the course.

  Incremental by file month: a build after loading (or reloading) one month rebuilds
  that month only (macros/changed_file_months.sql). BigQuery: partitioned by file_month
  (MONTH), clustered by pickup time and zone, the month's partition replaced
  (insert_overwrite). PostgreSQL: the month's rows deleted and inserted in one
  transaction (delete+insert on file_month). `transform --full-refresh` rebuilds all.
#}
{{ config(
    materialized='incremental',
    incremental_strategy=('insert_overwrite' if target.type == 'bigquery' else 'delete+insert'),
    unique_key=(none if target.type == 'bigquery' else 'file_month'),
    partition_by={
        'field': 'file_month', 'data_type': 'date', 'granularity': 'month',
        'copy_partitions': true,
    },
    cluster_by=['pickup_datetime', 'pickup_location_id'],
    indexes=([] if target.type == 'bigquery' else [{'columns': ['file_month']}]),
    on_schema_change='fail',
) }}
{%- if execute
    and not relation_exists(source('raw', 'green_tripdata'))
    and not relation_exists(source('raw', 'yellow_tripdata')) -%}
    {{ exceptions.raise_compiler_error(
        "no trips to transform: neither " ~ source('raw', 'green_tripdata') ~ " nor "
        ~ source('raw', 'yellow_tripdata') ~ " exists; load some months first"
        ~ " (e.g. `taxi-cli load-pg green 2020-04`)"
    ) }}
{%- endif %}

{%- set months = changed_file_months() if is_incremental() and execute else [] %}

with trips as (
    select * from {{ ref('stg_green_tripdata') }}
    union all
    select * from {{ ref('stg_yellow_tripdata') }}
),

fingerprints as (
    {{ source_fingerprints() }}
),

known_zones as (
    select * from {{ ref('dim_zones') }}
    where borough != 'Unknown'
)

select
    trips.trip_id,
    trips.vendor_id,
    trips.service_type,
    trips.ratecode_id,
    trips.pickup_location_id,
    pickup_zone.borough as pickup_borough,
    pickup_zone.zone as pickup_zone,
    trips.dropoff_location_id,
    dropoff_zone.borough as dropoff_borough,
    dropoff_zone.zone as dropoff_zone,
    trips.pickup_datetime,
    trips.dropoff_datetime,
    trips.store_and_fwd_flag,
    trips.passenger_count,
    trips.trip_distance,
    trips.trip_type,
    trips.fare_amount,
    trips.extra,
    trips.mta_tax,
    trips.tip_amount,
    trips.tolls_amount,
    trips.ehail_fee,
    trips.improvement_surcharge,
    trips.total_amount,
    trips.congestion_surcharge,
    trips.payment_type,
    trips.payment_type_description,
    trips.filename,
    trips.file_month,
    fingerprints.source_fingerprint
from trips
inner join fingerprints
    on trips.service_type = fingerprints.service_type
    and trips.file_month = fingerprints.file_month
inner join known_zones as pickup_zone
    on trips.pickup_location_id = pickup_zone.location_id
inner join known_zones as dropoff_zone
    on trips.dropoff_location_id = dropoff_zone.location_id
{%- if is_incremental() %}
where trips.file_month in (
    {%- for month in months %}
    cast('{{ month }}' as date){{ "," if not loop.last }}
    {%- else %}
    null  {#- nothing changed: no row #}
    {%- endfor %}
)
{%- endif %}
