"""greenflow: carbon-aware, accountable GPU work for Apache Airflow and Prefect.

The core (this package minus ``greenflow.airflow``, ``greenflow.prefect`` and ``greenflow.cli``) never
imports an orchestrator or the CLI: intensity providers, the window planner, meters, the ledger and
budgets, and the one task lifecycle both adapters call.

The import package is ``greenflow``; the distribution on the package index is :data:`DISTRIBUTION`
(``greenflow`` there is an unrelated project).
"""

__all__ = ["DISTRIBUTION", "__version__", "distribution_name"]

#: The name this project is published under (``pip install greenflow-carbon``).
DISTRIBUTION = "greenflow-carbon"
#: The release. The build reads it from here (``[tool.hatch.version]``), so the installed metadata says
#: the same; a constant, because reading it back through importlib.metadata costs ~0.13 s of CPU in an
#: environment holding Airflow and Prefect, paid by every ``greenflow --version``.
__version__ = "0.1.0"


def distribution_name() -> str:
    """The installed distribution that holds this package (normally :data:`DISTRIBUTION`).

    An environment installed before the rename (or from a fork under another name) still holds the
    import package ``greenflow`` under its old distribution name: the Airflow provider's
    ``package-name`` must name that one, or Airflow refuses the provider.
    """
    from importlib.metadata import PackageNotFoundError, distribution, entry_points

    try:
        return str(distribution(DISTRIBUTION).metadata["Name"])
    except PackageNotFoundError:
        pass
    # Off the normal path: the distribution that installs this package's `greenflow` command (an
    # editable install lists no package files, so its entry points are what names it).
    for point in entry_points(group="console_scripts", name="greenflow"):
        if point.value.startswith("greenflow.") and point.dist is not None:
            return str(point.dist.metadata["Name"])
    return DISTRIBUTION
