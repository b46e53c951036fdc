"""The generic cost-report model and conversion toolkit, free of provider type names.

Report files and manifests, the report source interfaces, CSV -> Parquet conversion, month tables
written with DuckDB, object-store path helpers and the results every step returns.
"""
