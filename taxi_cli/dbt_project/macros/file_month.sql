{#
  The first day of the month a release file covers, from its name:
  green_tripdata_2020-04.csv -> 2020-04-01, a DATE on every adapter. The raw Postgres
  tables have no file_month column (the loaders write `filename`); the raw BigQuery
  tables get one in the partition-per-file layout. Deriving it from `filename` works on
  both adapters and on both BigQuery layouts, and always agrees with that column.
#}
{% macro file_month_of(column) -%}
    {{ return(adapter.dispatch('file_month_of', 'taxi_rides_ny')(column)) }}
{%- endmacro %}

{% macro default__file_month_of(column) -%}
    to_date(substring({{ column }} from '\d{4}-\d{2}'), 'YYYY-MM')
{%- endmacro %}

{% macro bigquery__file_month_of(column) -%}
    parse_date('%Y-%m', regexp_extract({{ column }}, r'\d{4}-\d{2}'))
{%- endmacro %}
