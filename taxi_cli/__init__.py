"""taxi-cli: fast, idempotent ETL for the NYC TLC trip records."""

__version__ = "0.1.0"
