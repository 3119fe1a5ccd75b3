"""greenflow: carbon-aware, accountable GPU work for Apache Airflow and Prefect.

The core (this package minus ``greenflow.airflow`` and ``greenflow.prefect``) never imports an
orchestrator: intensity providers, the window planner, meters, the ledger and budgets, and the one
task lifecycle both adapters call.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("greenflow")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
