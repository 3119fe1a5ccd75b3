"""Physical quantities as users write them: ``500g``, ``12kg``, ``1.5t``, ``40kWh``, ``2MWh``.

Internally greenflow keeps emissions in grams of CO2e and energy in kWh.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from greenflow import bounds
from greenflow.errors import InvalidInput

Unit = Literal["gCO2e", "kWh"]

_QUANTITY = re.compile(r"^\s*(-?\d+(?:\.\d+)?(?:e-?\d+)?)\s*([A-Za-z0-9]+)?\s*$")
# Suffix -> (unit, factor to grams or to kWh). "CO2e"/"co2e" suffixes are accepted after mass units.
_MASS = {"mg": 1e-3, "g": 1.0, "kg": 1e3, "t": 1e6}
_ENERGY = {"wh": 1e-3, "kwh": 1.0, "mwh": 1e3, "gwh": 1e6, "j": 1 / 3.6e6, "kj": 1 / 3.6e3, "mj": 1 / 3.6}


@dataclass(frozen=True)
class Quantity:
    """A non-negative amount in greenflow's internal unit (grams CO2e or kWh)."""

    value: float
    unit: Unit

    def __str__(self) -> str:
        return format_mass(self.value) if self.unit == "gCO2e" else format_energy(self.value)


def parse_quantity(text: str | float | int, *, name: str = "limit", default_unit: Unit | None = None) -> Quantity:
    """Parse ``500g``/``12kg``/``1.5t`` (gCO2e) or ``40kWh``/``2MWh`` (kWh).

    A bare number needs ``default_unit``. The amount must be finite and at most 1 Gt CO2e or 1 TWh.
    Raises :class:`InvalidInput` naming the bad value.
    """
    return _bounded(_parse(text, name, default_unit), text, name)


def _bounded(quantity: Quantity, text: str | float | int, name: str) -> Quantity:
    high = bounds.MAX_GRAMS if quantity.unit == "gCO2e" else bounds.MAX_KWH
    if not math.isfinite(quantity.value) or abs(quantity.value) > high:
        raise InvalidInput(
            f"{name}={text!r} is not a finite amount up to {Quantity(high, quantity.unit)}",
            fix="give a real amount, e.g. 500g, 12kg or 40kWh",
        )
    return quantity


def _parse(text: str | float | int, name: str, default_unit: Unit | None) -> Quantity:
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        if default_unit is None:
            raise InvalidInput(f"{name}={text!r} has no unit", fix="write it like 500g, 12kg, 1.5t or 40kWh")
        return Quantity(float(text), default_unit)
    match = _QUANTITY.match(str(text))
    if not match:
        raise InvalidInput(f"{name}={text!r} is not a quantity", fix="write it like 500g, 12kg, 1.5t or 40kWh")
    number = float(match.group(1))
    suffix = (match.group(2) or "").lower().removesuffix("co2e").removesuffix("co2")
    if not suffix:
        if default_unit is None:
            raise InvalidInput(f"{name}={text!r} has no unit", fix="write it like 500g, 12kg, 1.5t or 40kWh")
        return Quantity(number, default_unit)
    if suffix in _MASS:
        return Quantity(number * _MASS[suffix], "gCO2e")
    if suffix in _ENERGY:
        return Quantity(number * _ENERGY[suffix], "kWh")
    raise InvalidInput(
        f"{name}={text!r} has an unknown unit {match.group(2)!r}",
        fix="use g, kg or t for CO2e, or Wh, kWh or MWh for energy",
    )


def parse_positive_quantity(text: str | float | int, *, name: str = "limit") -> Quantity:
    """Like :func:`parse_quantity` but the amount must be greater than zero."""
    quantity = parse_quantity(text, name=name)
    if quantity.value <= 0:
        raise InvalidInput(f"{name}={text!r} must be greater than zero", fix="give a positive amount, e.g. 5kg")
    return quantity


def format_mass(grams: float | None) -> str:
    """``1234.5`` -> ``1.23 kg``; ``None`` -> ``—``."""
    if grams is None:
        return "—"
    for unit, factor in (("t", 1e6), ("kg", 1e3)):
        if abs(grams) >= factor:
            return f"{grams / factor:.3g} {unit}"
    return f"{grams:.3g} g"


def format_energy(kwh: float | None) -> str:
    """``0.0123`` -> ``12.3 Wh``; ``2500`` -> ``2.5 MWh``; ``None`` -> ``—``."""
    if kwh is None:
        return "—"
    if abs(kwh) >= 1e3:
        return f"{kwh / 1e3:.3g} MWh"
    if abs(kwh) >= 1:
        return f"{kwh:.3g} kWh"
    return f"{kwh * 1e3:.3g} Wh"
