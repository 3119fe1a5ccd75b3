"""The configuration reference stays complete, and the README's and docs' links lead somewhere.

A user looking up an option, an environment variable, a ``[greenflow]`` setting, a connection type, a
block field or a ``greenflow run`` flag in ``docs/configuration.md`` must find it: each test below reads
the names from the code and fails naming whatever the page is missing.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from greenflow.airflow.get_provider_info import CONFIG, CONNECTION_TYPES
from greenflow.options import CARBON_OPTION_NAMES
from greenflow.spec import CarbonSpec

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "greenflow"
REFERENCE = ROOT / "docs" / "configuration.md"
# Pages whose links this project's docs engineer owns (docs/airflow.md and docs/prefect.md have their own owners).
LINKED_PAGES = (
    "README.md",
    "docs/configuration.md",
    "docs/providers.md",
    "docs/methods.md",
    "docs/scaling.md",
    "docs/ui.md",
)
# A variable name, not a pattern in prose ("GREENFLOW_*", "GREENFLOW_<PROVIDER>_...") nor the tail of
# Airflow's "AIRFLOW__GREENFLOW__LEDGER_URL".
_ENV_VAR = re.compile(r"(?<![A-Z0-9_])GREENFLOW_[A-Z0-9]+(?:_[A-Z0-9]+)*")
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def _reference() -> str:
    return REFERENCE.read_text(encoding="utf-8")


def _documented(name: str) -> bool:
    """The name appears as code (`name`) on the reference page."""
    return f"`{name}`" in _reference()


def _env_vars_in_package() -> list[str]:
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        found.update(_ENV_VAR.findall(path.read_text(encoding="utf-8")))
    return sorted(found)


def test_the_carbon_options_are_what_carbonspec_build_takes() -> None:
    # Guards the parametrisation below: CarbonSpec.build takes exactly CarbonOptions (``**options``).
    assert list(inspect.signature(CarbonSpec.build).parameters) == ["options"]
    assert "expected_duration" in CARBON_OPTION_NAMES and CarbonSpec.build(region="GB").region == "GB"


@pytest.mark.parametrize("option", sorted(CARBON_OPTION_NAMES))
def test_every_carbon_option_is_documented(option: str) -> None:
    assert _documented(option), f"carbon option {option!r} (CarbonOptions) is missing from {REFERENCE.name}"


def test_the_package_reads_environment_variables() -> None:
    # Guards the scan below: a broken pattern would otherwise pass every parametrised case vacuously.
    assert "GREENFLOW_LEDGER_URL" in _env_vars_in_package()


@pytest.mark.parametrize("variable", _env_vars_in_package())
def test_every_environment_variable_is_documented(variable: str) -> None:
    assert _documented(variable), f"{variable} is read in greenflow/ but missing from {REFERENCE.name}"


@pytest.mark.parametrize("option", list(CONFIG["greenflow"]["options"]))
def test_every_airflow_config_option_is_documented(option: str) -> None:
    default = CONFIG["greenflow"]["options"][option]["default"]
    rows = [line for line in _reference().splitlines() if line.startswith(f"| `{option}` |")]
    assert rows, f"[greenflow] {option} is missing from {REFERENCE.name}"
    assert any(f"`{default}`" in row or (not default and "(empty)" in row) for row in rows), (
        f"[greenflow] {option}: the documented default differs from the code's {default!r}"
    )


@pytest.mark.parametrize("conn_type", [c["connection-type"] for c in CONNECTION_TYPES])
def test_every_connection_type_is_documented(conn_type: str) -> None:
    assert _documented(conn_type), f"connection type {conn_type} is missing from {REFERENCE.name}"


def test_every_prefect_block_field_is_documented() -> None:
    from greenflow.prefect.blocks import GreenflowCredentials, GreenflowLedger

    missing = [
        f"{block.__name__}.{name}"
        for block in (GreenflowCredentials, GreenflowLedger)
        for name in block.model_fields
        if not _documented(name)
    ]
    assert _documented("GreenflowCredentials") and _documented("GreenflowLedger")
    assert not missing, f"Prefect block fields missing from {REFERENCE.name}: {missing}"


def test_every_greenflow_run_flag_is_documented() -> None:
    from typer.main import get_command

    from greenflow.cli.main import app

    run = get_command(app).commands["run"]  # type: ignore[attr-defined]
    flags = [opt for param in run.params for opt in param.opts if opt.startswith("--") and opt != "--help"]
    assert "--max-delay" in flags  # the command really was found
    missing = [flag for flag in flags if f"`{flag}" not in _reference()]
    assert not missing, f"greenflow run flags missing from {REFERENCE.name}: {missing}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_slug(line.lstrip("#")) for line in page.read_text(encoding="utf-8").splitlines() if line.startswith("#")}


@pytest.mark.parametrize("page", LINKED_PAGES)
def test_relative_links_lead_to_files_and_headings_that_exist(page: str) -> None:
    source = ROOT / page
    broken = []
    for target in _LINK.findall(source.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path_part, _, anchor = target.partition("#")
        linked = (source.parent / path_part).resolve() if path_part else source
        if not linked.exists():
            broken.append(f"{target} (no file {linked.relative_to(ROOT) if linked.is_relative_to(ROOT) else linked})")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target} (no heading #{anchor} in {linked.name})")
    assert not broken, f"broken links in {page}: {broken}"
