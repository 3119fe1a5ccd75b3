"""The distribution's name: the one greenflow is published under, and the one every install command uses.

``greenflow`` on the package index is an unrelated project (1.0.5, 2021): an install command naming it
installs someone else's code, so the README, the docs and the image all name :data:`DISTRIBUTION`.
"""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

import greenflow
from greenflow import DISTRIBUTION, distribution_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# What a user copies: `pip install "NAME[extras]"`, `pip install NAME`, `"NAME[extras] @ file://..."`.
_INSTALLS = re.compile(r"""pip install\s+(?:--?\S+\s+)*["']?(?P<name>[A-Za-z0-9_.\-/]+)""")
_DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "docker" / "Dockerfile"]


def test_the_project_is_published_under_its_own_name_not_the_taken_one() -> None:
    assert PROJECT["name"] == DISTRIBUTION != "greenflow"
    assert PROJECT["optional-dependencies"]["all"] == [f"{DISTRIBUTION}[airflow,prefect,nvidia,postgres,report,dev]"]


@pytest.mark.parametrize("document", _DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_install_command_names_the_distribution(document: Path) -> None:
    text = document.read_text()
    names = [m["name"] for m in _INSTALLS.finditer(text)]
    ours = [n for n in names if n.split("[")[0] in {"greenflow", DISTRIBUTION} or n.startswith("/opt/greenflow")]
    assert all(n.split("[")[0] == DISTRIBUTION for n in ours), (document.name, ours)
    # Extras spelled anywhere (`greenflow[nvidia]` in prose) name the distribution too.
    assert not re.search(r"(?<![\w-])greenflow\[", text), document.name


def test_the_version_is_the_installed_distributions_whatever_its_name() -> None:
    # The shared development environment may still hold an install made before the rename.
    assert greenflow.__version__ == version(distribution_name())
