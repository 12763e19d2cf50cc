{#
  The TLC zones, from the table loaded by `load-pg zones` / `load-bq zones` (not a seed:
  the CLI loads the same release file the trips come from). service_zone 'Boro Zone' is
  the green-taxi area, named 'Green Zone' as in the course.
#}
{%- set zones = source('raw', 'taxi_zone_lookup') -%}
{%- if execute and not relation_exists(zones) -%}
    {{ exceptions.raise_compiler_error(
        "the zone lookup " ~ zones ~ " does not exist: load it with"
        ~ " `taxi-cli load-pg zones` (or `taxi-cli load-bq zones`), then run transform again"
    ) }}
{%- endif %}

select
    {{ to_int('locationid') }} as location_id,
    borough,
    zone,
    replace(service_zone, 'Boro', 'Green') as service_zone
from {{ zones }}
