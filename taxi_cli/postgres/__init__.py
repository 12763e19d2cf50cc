"""PostgreSQL: the pg destination and the embedded server.

Modules: `destination` (the pg destination of the load contract), `target` (which server,
connecting), `embedded` (the default server), `ddl` (tables), `rows` (CSV -> COPY
batches with row ids), `md5vec` (vectorised md5), `loader` (the transaction), `ledger`,
`zones`, `db` (the `db` command). The package imports nothing itself, so that its pure
modules (`ddl`, `pgbinary`) load without psycopg.
"""
