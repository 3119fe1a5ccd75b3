"""The private Airflow names greenflow relies on, each in one module, pinned so that an upgrade fails here.

Airflow 3.3 offers no public way for three things greenflow does:

* ``greenflow.airflow.decorators.carbon_aware`` subclasses ``_TaskDecorator`` (what ``@task.x`` returns)
  to check the carbon-aware arguments when ``.expand()`` is called, and reads ``DagContext`` /
  ``TaskGroupContext`` (``airflow.sdk.definitions._internal``) for the DAG's ``default_args``;
* ``greenflow.airflow.mapped_validation`` sets ``OperatorPartial._expand_called`` so that a refused
  ``expand()`` does not also warn "never mapped";
* ``greenflow.airflow.plugins.redaction`` calls ``airflow._shared.secrets_masker.redact`` so that the
  Carbon Ledger masks what Airflow masks.

Everything else uses public names (``OperatorPartial.expand``/``expand_kwargs``, not ``_expand``), and
the last test keeps it so: a new private name anywhere else fails it.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import airflow
import pytest
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, TaskGroup, task
from airflow.sdk.bases.decorator import _TaskDecorator
from airflow.sdk.bases.operator import partial as sdk_partial
from airflow.sdk.definitions._internal.contextmanager import DagContext, TaskGroupContext
from airflow.sdk.definitions.mappedoperator import OperatorPartial

from greenflow.airflow.decorators.carbon_aware import CarbonAwareTaskDecorator
from greenflow.airflow.plugins.redaction import redact
from greenflow.errors import InvalidInput

VERIFIED_ON = "3.3."
RECHECK = f"greenflow's private Airflow names were verified on {VERIFIED_ON}x: re-verify this file before moving on"
PACKAGE = Path(__file__).resolve().parents[2] / "greenflow"
# module (relative to greenflow/) -> the private Airflow names it may use.
ALLOWED = {
    "airflow/decorators/carbon_aware.py": {"_TaskDecorator", "_internal"},
    "airflow/mapped_validation.py": {"_expand_called"},
    "airflow/plugins/redaction.py": {"_shared"},
}


def test_the_installed_airflow_is_the_one_the_private_names_were_verified_on() -> None:
    assert airflow.__version__.startswith(VERIFIED_ON), f"airflow {airflow.__version__}: {RECHECK}"


def test_task_decorators_are_task_decorator_instances_with_public_expand_methods() -> None:
    @task
    def plain() -> int:
        return 1

    assert isinstance(plain, _TaskDecorator)
    assert issubclass(CarbonAwareTaskDecorator, _TaskDecorator)
    for name in ("expand", "expand_kwargs", "kwargs", "operator_class"):
        assert hasattr(plain, name), name


def test_dag_and_task_group_contexts_name_the_enclosing_dag_and_group() -> None:
    with DAG("contract_contexts", schedule=None) as dag:
        assert DagContext.get_current() is dag
        assert TaskGroupContext.get_current(dag) is dag.task_group
        with TaskGroup("inner") as group:
            assert TaskGroupContext.get_current(dag) is group
    assert DagContext.get_current() is None


def test_expand_called_is_what_silences_the_never_mapped_warning() -> None:
    with DAG("contract_partial", schedule=None):
        unexpanded = sdk_partial(EmptyOperator, task_id="never")
        silenced = sdk_partial(EmptyOperator, task_id="silenced")
    assert isinstance(unexpanded, OperatorPartial) and unexpanded._expand_called is False
    silenced._expand_called = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        unexpanded.__del__()
        silenced.__del__()
    assert [str(w.message) for w in caught] == ["Task 'never' was never mapped!"]


def test_a_mapped_carbon_aware_task_is_refused_at_parse_time_through_the_public_expand() -> None:
    # The DAG's default_args reach the check only through DagContext (the decorator has no dag= of its own).
    with DAG("contract_mapped", schedule=None, default_args={"expected_duration": "-1h"}):

        @task.carbon_aware(region="GB", provider="ukgrid")
        def infer(x: int) -> int:
            return x

        with pytest.raises(InvalidInput, match="-1h"):
            infer.expand(x=[1, 2])


def test_redact_masks_registered_secrets_and_sensitive_keys() -> None:
    # The API server's masker: the one its connections and variables register their secrets with.
    from airflow._shared.secrets_masker import mask_secret

    mask_secret("s3cret-contract-token")
    assert "s3cret-contract-token" not in str(redact("token is s3cret-contract-token"))
    assert redact({"password": "hunter2"})["password"] != "hunter2"


def _private_names(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "airflow":
            names |= {part for part in node.module.split(".") if part.startswith("_")}
            names |= {alias.name for alias in node.names if alias.name.startswith("_")}
        elif isinstance(node, ast.Attribute) and node.attr in {"_expand", "_expand_called"}:
            names.add(node.attr)
    return names


def test_no_other_module_uses_a_private_airflow_name() -> None:
    found = {
        str(path.relative_to(PACKAGE)): names
        for path in sorted(PACKAGE.rglob("*.py"))
        if (names := _private_names(path.read_text()))
    }
    assert found == ALLOWED
