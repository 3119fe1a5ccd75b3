"""Fixtures of the report tests."""

from __future__ import annotations

import pytest

from tests.report.mixed_ledger import write_mixed_ledger


@pytest.fixture(scope="session")
def mixed_ledger_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A SQLite ledger holding the mixed entries (written once: tests only read it)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('mixed') / 'ledger.db'}"
    write_mixed_ledger(url).close()
    return url
