{#
  The trip id: md5 of the fields, each cast to text (NULL as a marker), joined with '-'.
  Same recipe as dbt_utils.generate_surrogate_key, written here so that the project
  needs no hub package. Hex on both adapters (BigQuery's md5 returns BYTES).
#}
{% macro surrogate_key(fields) -%}
    {%- set parts = [] -%}
    {%- for field in fields -%}
        {%- do parts.append(
            "coalesce(cast(" ~ field ~ " as " ~ dbt.type_string() ~ "), '_taxi_null_')"
        ) -%}
    {%- endfor -%}
    {{ md5_hex(parts | join(" || '-' || ")) }}
{%- endmacro %}

{% macro md5_hex(expression) -%}
    {{ return(adapter.dispatch('md5_hex', 'taxi_rides_ny')(expression)) }}
{%- endmacro %}

{% macro default__md5_hex(expression) -%}
    md5({{ expression }})
{%- endmacro %}

{% macro bigquery__md5_hex(expression) -%}
    to_hex(md5({{ expression }}))
{%- endmacro %}
