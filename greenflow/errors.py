"""Errors greenflow raises on purpose.

Every error that a user can cause names the bad value and the fix, so that the CLI can print it as
one line and exit 2, and an Airflow DAG fails to import with the same message.
"""

from __future__ import annotations

from greenflow import exit_codes


class GreenflowError(Exception):
    """Base class: a message that names the bad value, plus how to fix it."""

    exit_code = exit_codes.INVALID_INPUT

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        """The message and its fix on one line, as the CLI prints it."""
        return f"{self.message} ({self.fix})" if self.fix else self.message


class InvalidInput(GreenflowError, ValueError):
    """A value given by the user (unit, period, time, duration, name) is not acceptable."""


class ConfigError(GreenflowError):
    """Configuration (env vars, config file, connections) is missing or inconsistent."""


class LedgerUnavailable(GreenflowError):
    """The ledger database cannot be reached."""


class LedgerSchemaOutdated(GreenflowError):
    """The ledger's schema is older (or newer) than this greenflow expects."""


class BudgetNotFound(GreenflowError, LookupError):
    """A budget named by the user does not exist."""


class BudgetExceeded(GreenflowError):
    """A reservation does not fit in what is left of a budget."""

    exit_code = exit_codes.BUDGET_REFUSED


class ProviderError(GreenflowError):
    """A carbon-intensity provider failed (network, auth, plan, malformed payload)."""
