"""Whether a carbon budget has room for more work: the one rule the budget sensor and its trigger share."""

from __future__ import annotations

from greenflow.errors import InvalidInput
from greenflow.ledger import BudgetStatus
from greenflow.units import parse_quantity


def check_min_remaining(text: str | None) -> str | None:
    """Validate ``min_remaining`` (``"50g"``, ``"0.2kWh"``) at parse time; returns it unchanged."""
    if text is not None and parse_quantity(text, name="min_remaining").value < 0:
        raise InvalidInput(f"min_remaining={text!r} is negative", fix="give e.g. 50g or 0.2kWh")
    return text


def has_room(status: BudgetStatus, min_remaining: str | None) -> bool:
    """True when the budget is not exhausted and (if given) at least ``min_remaining`` is left."""
    if status.exhausted:
        return False
    if min_remaining is None:
        return True
    needed = parse_quantity(min_remaining, name="min_remaining")
    if needed.unit != status.budget.unit:
        raise InvalidInput(
            f"min_remaining={min_remaining!r} is in {needed.unit} but budget {status.budget.name!r} counts "
            f"{status.budget.unit}",
            fix=f"give min_remaining in {status.budget.unit}",
        )
    return status.remaining >= needed.value
