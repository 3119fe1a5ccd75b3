"""greenflow: carbon-aware, accountable GPU work for Apache Airflow and Prefect.

The core (this package minus ``greenflow.airflow`` and ``greenflow.prefect``) never imports an
orchestrator: intensity providers, the window planner, meters, the ledger and budgets, and the one
task lifecycle both adapters call.
"""

from typing import Any

__all__ = ["__version__"]


def __getattr__(name: str) -> Any:
    # Computed on first use: importlib.metadata costs ~30 ms, paid by every `greenflow run` otherwise.
    if name != "__version__":
        raise AttributeError(f"module 'greenflow' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("greenflow")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0+unknown"
