{#
  Money and distance are exact decimals in the models, as in the course: `numeric` is
  unconstrained on PostgreSQL and NUMERIC(38, 9) on BigQuery (dbt's own type_numeric()
  would be numeric(28, 6) on PostgreSQL). Integers go through dbt.safe_cast, a plain
  cast on PostgreSQL and SAFE_CAST on BigQuery.
#}
{% macro to_int(column) -%}
    {{ dbt.safe_cast(column, dbt.type_int()) }}
{%- endmacro %}

{% macro to_money(column) -%}
    cast({{ column }} as numeric)
{%- endmacro %}

{#
  The trip times are New York wall-clock times without a zone: `timestamp` on
  PostgreSQL, DATETIME on BigQuery (what load-bq writes; dbt's type_timestamp() would
  make them UTC TIMESTAMPs). Both render as text as 'YYYY-MM-DD HH:MM:SS', so trip_id
  is the same on both warehouses.
#}
{% macro wallclock_type() -%}
    {{ return(adapter.dispatch('wallclock_type', 'taxi_rides_ny')()) }}
{%- endmacro %}

{% macro default__wallclock_type() -%}
    timestamp
{%- endmacro %}

{% macro bigquery__wallclock_type() -%}
    datetime
{%- endmacro %}
