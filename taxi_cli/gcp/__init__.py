"""The data-lake and warehouse path: month files to GCS (`gcs`), then into BigQuery (`bq`).

`clients` builds authenticated clients (or anonymous ones for emulators) and turns
Google API failures into `TaxiError`s; `gcs` uploads verified files; `bq_schema` holds
the table schemas and the row-id SQL; `bq` runs the load jobs and the MERGE.
"""
