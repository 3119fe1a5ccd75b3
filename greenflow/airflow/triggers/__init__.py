"""Triggers run by the Airflow triggerer while a carbon-aware task waits (no worker slot held)."""
