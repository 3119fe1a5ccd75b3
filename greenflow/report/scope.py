"""Which entries a report covers: ``all``, ``team:…``, ``workflow:…`` or ``tag:…``.

The words and their checks are the budgets' (:class:`greenflow.ledger.budgets.Scope`), so a report for
``team:vision`` counts exactly what a budget for ``team:vision`` counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement

from greenflow.errors import InvalidInput
from greenflow.ledger.budgets import Scope

# The columns these values are compared with hold at most this many characters.
_MAX_VALUE = 250


@dataclass(frozen=True)
class ReportScope:
    """A parsed ``--scope``."""

    scope: Scope

    @classmethod
    def parse(cls, text: str | None) -> ReportScope:
        """``all`` (default), ``team:vision``, ``workflow:train_llm``, ``tag:gpu``; anything else is refused."""
        try:
            scope = Scope.parse(text)
        except InvalidInput as error:
            raise InvalidInput(
                f"--scope {text!r} is not a scope ({error.message})",
                fix="use all, team:<name>, workflow:<id> or tag:<tag>",
            ) from None
        if scope.value is not None and (len(scope.value) > _MAX_VALUE or not scope.value.isprintable()):
            raise InvalidInput(
                f"--scope {text!r}: the value is not printable or longer than {_MAX_VALUE} characters",
                fix="give the team, workflow or tag name as recorded in the ledger",
            )
        return cls(scope)

    def __str__(self) -> str:
        return str(self.scope)

    def condition(self) -> ColumnElement[bool]:
        """The SQL condition selecting entries in scope."""
        return self.scope.condition()

    def matches(self, team: str | None, workflow_id: str, tags: tuple[str, ...]) -> bool:
        """The same test in Python (for entries already loaded)."""
        kind, value = self.scope.kind, self.scope.value
        if kind == "all":
            return True
        if kind == "team":
            return team == value
        if kind == "workflow":
            return workflow_id == value
        return value in tags
