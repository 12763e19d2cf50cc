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
