"""The "Carbon ledger" extra link: ``{[api] base_url}/greenflow/ledger?dag_id=…&run_id=…&task_id=…``."""

from __future__ import annotations

from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

from greenflow.airflow.links.ledger import GreenflowLedgerLink, ledger_url_for
from greenflow.airflow.operators.carbon_aware import CarbonAwareOperator


def test_the_link_encodes_the_task_instance_under_the_base_url() -> None:
    key = SimpleNamespace(dag_id="train_llm", run_id="manual__2024-05-01T12:00:00+00:00", task_id="train", map_index=-1)
    url = GreenflowLedgerLink().get_link(None, ti_key=key)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "http://airflow.test:8080/greenflow/ledger"
    assert parse_qs(parts.query) == {
        "dag_id": ["train_llm"],
        "run_id": ["manual__2024-05-01T12:00:00+00:00"],
        "task_id": ["train"],
    }
    assert "%2B00%3A00" in url  # '+' and ':' are escaped, so the run id survives the query string


def test_mapped_task_instances_get_their_map_index() -> None:
    assert ledger_url_for("/", "d", "r", "t", 3) == "/greenflow/ledger?dag_id=d&run_id=r&task_id=t&map_index=3"


def test_every_greenflow_operator_carries_the_link() -> None:
    op = CarbonAwareOperator(task_id="t", python_callable=print, region="GB", provider="ukgrid")
    assert [link.name for link in op.operator_extra_links] == ["Carbon ledger"]
