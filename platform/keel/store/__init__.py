"""Everything the platform persists in its database; the only package that talks to DuckDB."""

DB_FILE = "keel.duckdb"  # the database file under data_dir
