"""Application database: schema (Koku's table names), engine and migrations."""
