"""Hooks reading greenflow's settings (provider tokens, the ledger URL) from Airflow connections."""
