{#
  Every staged trip of both services whose pickup and dropoff zones are known: inner
  joins to dim_zones without the 'Unknown' borough (ids 264/265), as in the course.
#}
{%- if execute
    and not relation_exists(source('raw', 'green_tripdata'))
    and not relation_exists(source('raw', 'yellow_tripdata')) -%}
    {{ exceptions.raise_compiler_error(
        "no trips to transform: neither " ~ source('raw', 'green_tripdata') ~ " nor "
        ~ source('raw', 'yellow_tripdata') ~ " exists; load some months first"
        ~ " (e.g. `taxi-cli load-pg green 2020-04`)"
    ) }}
{%- endif %}

with trips as (
    select * from {{ ref('stg_green_tripdata') }}
    union all
    select * from {{ ref('stg_yellow_tripdata') }}
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
    trips.filename
from trips
inner join known_zones as pickup_zone
    on trips.pickup_location_id = pickup_zone.location_id
inner join known_zones as dropoff_zone
    on trips.dropoff_location_id = dropoff_zone.location_id
