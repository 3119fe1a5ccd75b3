"""The Carbon Ledger in the Airflow UI: a plugin serving pages, a task-instance tab and a read-only JSON API.

Airflow loads :class:`~greenflow.airflow.plugins.ledger_plugin.GreenflowLedgerPlugin` through the
``airflow.plugins`` entry point in every process, task processes included, so the plugin module stays
light: the FastAPI application (and FastAPI itself) is only imported when the API server asks for it.
"""
