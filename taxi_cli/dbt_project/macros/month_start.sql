{# The first day of the month of a timestamp, as a DATE on every adapter. #}
{% macro month_start(column) -%}
    {{ return(adapter.dispatch('month_start', 'taxi_rides_ny')(column)) }}
{%- endmacro %}

{% macro default__month_start(column) -%}
    cast(date_trunc('month', {{ column }}) as date)
{%- endmacro %}

{% macro bigquery__month_start(column) -%}
    date_trunc(date({{ column }}), month)
{%- endmacro %}
