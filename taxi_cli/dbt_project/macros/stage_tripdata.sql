{#
  One staging model per taxi type, one vocabulary: typed columns, a surrogate trip id,
  rows without a vendor dropped, one row per trip id.

  trip_id = surrogate_key(vendor_id, pickup_datetime, pickup_location_id, service_type),
  the course's 2026 key (the 2024-25 one, vendor + pickup time, merged distinct trips).
  Among rows sharing a trip id the kept one is chosen by a stable order (the loaders'
  unique_row_id, then the file), so rebuilds keep the same rows; the course's
  row_number() had no ORDER BY. file_month: the month of the release file the row
  came from (macros/file_month.sql), what the fact table is partitioned by.
#}
{% macro stage_tripdata(taxi) -%}
    {%- set prefix = 'lpep' if taxi == 'green' else 'tpep' -%}
    {%- set service_type = taxi | capitalize -%}
with source as (
    {{ tripdata_source(taxi) }}
),

typed as (
    select
        {{ to_int('vendorid') }} as vendor_id,
        {{ to_int('ratecodeid') }} as ratecode_id,
        {{ to_int('pulocationid') }} as pickup_location_id,
        {{ to_int('dolocationid') }} as dropoff_location_id,
        cast({{ prefix }}_pickup_datetime as {{ wallclock_type() }}) as pickup_datetime,
        cast({{ prefix }}_dropoff_datetime as {{ wallclock_type() }}) as dropoff_datetime,
        store_and_fwd_flag,
        {{ to_int('passenger_count') }} as passenger_count,
        {{ to_money('trip_distance') }} as trip_distance,
        {%- if taxi == 'green' %}
        {{ to_int('trip_type') }} as trip_type,
        {%- else %}
        1 as trip_type,
        {%- endif %}
        {{ to_money('fare_amount') }} as fare_amount,
        {{ to_money('extra') }} as extra,
        {{ to_money('mta_tax') }} as mta_tax,
        {{ to_money('tip_amount') }} as tip_amount,
        {{ to_money('tolls_amount') }} as tolls_amount,
        {%- if taxi == 'green' %}
        {{ to_money('ehail_fee') }} as ehail_fee,
        {%- else %}
        {{ to_money('0') }} as ehail_fee,
        {%- endif %}
        {{ to_money('improvement_surcharge') }} as improvement_surcharge,
        {{ to_money('total_amount') }} as total_amount,
        {{ to_money('congestion_surcharge') }} as congestion_surcharge,
        coalesce({{ to_int('payment_type') }}, 0) as payment_type,
        '{{ service_type }}' as service_type,
        unique_row_id,
        filename,
        {{ file_month_of('filename') }} as file_month
    from source
    where vendorid is not null
),

keyed as (
    select
        {{ surrogate_key(['vendor_id', 'pickup_datetime', 'pickup_location_id', 'service_type']) }}
            as trip_id,
        typed.*
    from typed
),

ranked as (
    select
        keyed.*,
        row_number() over (
            partition by trip_id
            order by unique_row_id, filename, dropoff_datetime, total_amount
        ) as rn
    from keyed
)

select
    trip_id,
    vendor_id,
    service_type,
    ratecode_id,
    pickup_location_id,
    dropoff_location_id,
    pickup_datetime,
    dropoff_datetime,
    store_and_fwd_flag,
    passenger_count,
    trip_distance,
    trip_type,
    fare_amount,
    extra,
    mta_tax,
    tip_amount,
    tolls_amount,
    ehail_fee,
    improvement_surcharge,
    total_amount,
    congestion_surcharge,
    payment_type,
    {{ get_payment_type_description('payment_type') }} as payment_type_description,
    unique_row_id,
    filename,
    file_month
from ranked
where rn = 1
{%- if var('is_test_run', false) %}
-- is_test_run: a small, stable sample
order by trip_id
limit {{ var('test_run_rows', 100) }}
{%- endif %}
{%- endmacro %}
