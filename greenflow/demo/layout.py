"""Where the demo keeps its files, and where it finds the example DAG and flow.

Everything lives under one directory (``./.demo`` by default) so a re-run can start fresh by removing
it; a marker file proves a directory is the demo's before anything in it is deleted.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from greenflow.errors import InvalidInput

MARKER = ".greenflow-demo"
DAG_FILE = Path("dags") / "greenflow_example_training.py"
FLOW_FILE = Path("flows") / "training.py"
CHECKPOINTED_FILE = Path("flows") / "checkpointed_training.py"


@dataclass(frozen=True)
class DemoLayout:
    """The demo directory's paths (all absolute)."""

    root: Path

    @property
    def ledger_path(self) -> Path:
        """The SQLite ledger the demo leaves behind."""
        return self.root / "ledger.db"

    @property
    def ledger_url(self) -> str:
        """SQLAlchemy URL of :attr:`ledger_path`."""
        return f"sqlite:///{self.ledger_path}"

    @property
    def airflow_home(self) -> Path:
        """The Airflow part's ``AIRFLOW_HOME`` (SQLite metadata DB, a DAGs folder with one example)."""
        return self.root / "airflow"

    @property
    def prefect_home(self) -> Path:
        """The Prefect part's ``PREFECT_HOME`` (its temporary server's database)."""
        return self.root / "prefect"

    @property
    def logs(self) -> Path:
        """Full logs of each part and the parts' result files."""
        return self.root / "logs"

    def log(self, part: str) -> Path:
        """The captured stdout/stderr of ``part``."""
        return self.logs / f"{part}.log"

    def result(self, part: str) -> Path:
        """The JSON result ``part`` writes when it ends."""
        return self.logs / f"{part}.result.json"

    @property
    def finetune_dir(self) -> Path:
        """The interruptible fine-tune's checkpoint and its own log of what it did (start, paused, resumed)."""
        return self.root / "finetune"

    @property
    def prefect_go(self) -> Path:
        """Created by the parent when the Prefect flow may start (after the Airflow run)."""
        return self.logs / "prefect.go"

    def prepare_fresh(self) -> None:
        """Empty the directory (only if it is the demo's, or empty) and create the sub-directories."""
        if self.root.exists():
            if not self.root.is_dir():
                raise InvalidInput(f"demo directory {self.root} is a file", fix="pass --dir with a directory path")
            if any(self.root.iterdir()) and not (self.root / MARKER).exists():
                raise InvalidInput(
                    f"demo directory {self.root} is not empty and was not made by greenflow demo",
                    fix="pass --dir with a new or empty directory (the demo deletes its directory's contents)",
                )
            shutil.rmtree(self.root)
        for path in (self.root, self.airflow_home / "dags", self.prefect_home, self.logs, self.finetune_dir):
            path.mkdir(parents=True, exist_ok=True)
        (self.root / MARKER).write_text("made by `greenflow demo`; removed and rebuilt on every run\n")


@dataclass(frozen=True)
class Examples:
    """The example DAG, flow and checkpointing script the demo runs (from the repository checkout)."""

    dag_file: Path
    flow_file: Path
    checkpointed_file: Path


def find_examples(start: Path, package_dir: Path) -> Examples:
    """The examples under ``start`` (the working directory) or the checkout holding ``package_dir``."""
    for base in (start, package_dir.parent):
        dag, flow, checkpointed = base / DAG_FILE, base / FLOW_FILE, base / CHECKPOINTED_FILE
        if dag.is_file() and flow.is_file() and checkpointed.is_file():
            return Examples(dag.resolve(), flow.resolve(), checkpointed.resolve())
    raise InvalidInput(
        f"the examples {DAG_FILE}, {FLOW_FILE} and {CHECKPOINTED_FILE} are not under {start} nor {package_dir.parent}",
        fix="run `make demo` (or `greenflow demo`) from the root of a greenflow checkout",
    )
