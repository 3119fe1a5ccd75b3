"""greenflow's Airflow provider: carbon-aware operators, triggers, sensors, a governance gate and links.

A thin adapter: every module here translates Airflow's context (task instance, connections, deferral)
into calls of the orchestrator-free core (:mod:`greenflow.lifecycle`, :mod:`greenflow.ledger`). This
package must stay importable without importing Airflow, because Airflow imports
:mod:`greenflow.airflow.get_provider_info` while it is still loading its own configuration.
"""
