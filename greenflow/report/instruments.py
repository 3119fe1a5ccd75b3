"""Contractual instruments (PPAs, certificates, green tariffs) and residual-mix factors, as declared.

The user declares every number here: greenflow ships no residual-mix or instrument defaults. Each row
carries a SHA-256 of its canonical content; a row whose hash no longer matches was changed outside
greenflow and is reported as such (a report then gives no market-based figure for it).
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import delete, insert, select

from greenflow.clock import require_aware, utcnow
from greenflow.errors import InvalidInput
from greenflow.intensity.forecast import canonical_json
from greenflow.ledger import Ledger
from greenflow.report.instrument_tables import InstrumentRow, ResidualMixRow
from greenflow.report.period import MAX_YEAR, MIN_YEAR, parse_bound

T = TypeVar("T")
KINDS = ("ppa", "go", "rego", "rec", "i-rec", "green_tariff", "supplier_specific")
# Upper bounds that catch unit slips (kWh typed as MWh, kg as g) without refusing real contracts.
MAX_MWH = 10_000_000.0  # 10 TWh
MAX_FACTOR = 2000.0  # gCO2e/kWh: above lignite
MAX_VALIDITY = timedelta(days=366 * 25)
CSV_COLUMNS = ("region", "from", "to", "mwh", "factor", "kind", "reference")


def _text(value: str | None, name: str, limit: int, *, required: bool = True) -> str | None:
    if value is None or not value.strip():
        if required:
            raise InvalidInput(f"{name} is empty", fix=f"give the {name}")
        return None
    cleaned = value.strip()
    if len(cleaned) > limit or not cleaned.isprintable():
        raise InvalidInput(
            f"{name}={value!r} is not printable or longer than {limit} characters", fix=f"shorten the {name}"
        )
    return cleaned


def parse_number(value: float | str, name: str, low: float, high: float) -> float:
    """``value`` as a finite number in ``[low, high]``, or InvalidInput naming it."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name}={value!r} is not a number", fix=f"give {name} as a number") from None
    if not math.isfinite(number) or not low <= number <= high:
        raise InvalidInput(
            f"{name}={value!r} is outside {low:g}-{high:g}", fix=f"give {name} between {low:g} and {high:g}"
        )
    return number


def _sha256(content: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(content).encode()).hexdigest()


@dataclass(frozen=True)
class Instrument:
    """``mwh`` of energy at ``factor_g_per_kwh``, usable in ``region`` during ``[valid_from, valid_to)``."""

    region: str
    valid_from: datetime
    valid_to: datetime
    mwh: float
    factor_g_per_kwh: float
    kind: str
    reference: str | None = None
    instrument_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    recorded_at: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        object.__setattr__(self, "region", _text(self.region, "region", 64))
        object.__setattr__(self, "reference", _text(self.reference, "reference", 255, required=False))
        for name in ("valid_from", "valid_to", "recorded_at"):
            object.__setattr__(self, name, require_aware(getattr(self, name), name).astimezone(UTC))
        if self.valid_to <= self.valid_from:
            raise InvalidInput(
                f"instrument valid to {self.valid_to.isoformat()} is not after {self.valid_from.isoformat()}",
                fix="give --to later than --from",
            )
        if self.valid_to - self.valid_from > MAX_VALIDITY:
            raise InvalidInput("an instrument valid for more than 25 years", fix="check --from and --to")
        for name in ("valid_from", "valid_to"):
            year = getattr(self, name).year
            if not MIN_YEAR <= year <= MAX_YEAR + 1:
                raise InvalidInput(f"{name} year {year} is outside {MIN_YEAR}-{MAX_YEAR}", fix="check the dates")
        object.__setattr__(self, "mwh", parse_number(self.mwh, "mwh", 0.0, MAX_MWH))
        if self.mwh <= 0:
            raise InvalidInput(f"mwh={self.mwh!r} is not above 0", fix="give the instrument's volume in MWh")
        object.__setattr__(self, "factor_g_per_kwh", parse_number(self.factor_g_per_kwh, "factor", 0.0, MAX_FACTOR))
        kind = (self.kind or "").strip().lower()
        if kind not in KINDS:
            raise InvalidInput(f"kind={self.kind!r} is unknown", fix=f"use one of {', '.join(KINDS)}")
        object.__setattr__(self, "kind", kind)

    def content(self) -> dict[str, Any]:
        """What the hash covers (everything but the hash)."""
        return {
            "instrument_id": self.instrument_id,
            "region": self.region,
            "valid_from": self.valid_from.isoformat(),
            "valid_to": self.valid_to.isoformat(),
            "mwh": self.mwh,
            "factor_g_per_kwh": self.factor_g_per_kwh,
            "kind": self.kind,
            "reference": self.reference,
            "recorded_at": self.recorded_at.isoformat(),
        }

    @property
    def content_hash(self) -> str:
        """SHA-256 of the canonical content."""
        return _sha256(self.content())

    def kwh_per_hour(self) -> float:
        """The volume spread evenly over the validity (the hourly-matching rule, docs/reports.md)."""
        return self.mwh * 1000 / ((self.valid_to - self.valid_from).total_seconds() / 3600)


@dataclass(frozen=True)
class ResidualMix:
    """The factor for energy no instrument covers in ``region``, with where the user took it from."""

    region: str
    factor_g_per_kwh: float
    source: str
    declared_at: datetime = field(default_factory=utcnow)

    def __post_init__(self) -> None:
        object.__setattr__(self, "region", _text(self.region, "region", 64))
        object.__setattr__(self, "source", _text(self.source, "source", 255))
        object.__setattr__(self, "factor_g_per_kwh", parse_number(self.factor_g_per_kwh, "factor", 0.0, MAX_FACTOR))
        object.__setattr__(self, "declared_at", require_aware(self.declared_at, "declared_at").astimezone(UTC))

    def content(self) -> dict[str, Any]:
        """What the hash covers."""
        return {
            "region": self.region,
            "factor_g_per_kwh": self.factor_g_per_kwh,
            "source": self.source,
            "declared_at": self.declared_at.isoformat(),
        }

    @property
    def content_hash(self) -> str:
        """SHA-256 of the canonical content."""
        return _sha256(self.content())


@dataclass(frozen=True)
class Stored(Generic[T]):
    """A stored row: the value and whether it is still what greenflow recorded."""

    value: T
    stored_hash: str
    problem: str | None = None
    """Set when the stored values are not a valid row (changed outside greenflow)."""

    @property
    def intact(self) -> bool:
        """False when the row was changed outside greenflow (its hash or its values)."""
        return self.problem is None and bool(getattr(self.value, "content_hash") == self.stored_hash)  # noqa: B009


def parse_instrument(
    region: str, start: str, end: str, mwh: str | float, factor: str | float, kind: str, reference: str | None = None
) -> Instrument:
    """An instrument from the words a user types (dates as ``--from``/``--to`` of a report: ``--to`` day included)."""
    return Instrument(
        region=region,
        valid_from=parse_bound(start, "--from", inclusive_day=False),
        valid_to=parse_bound(end, "--to", inclusive_day=True),
        mwh=parse_number(mwh, "mwh", 0.0, MAX_MWH),
        factor_g_per_kwh=parse_number(factor, "factor", 0.0, MAX_FACTOR),
        kind=kind,
        reference=reference,
    )


def parse_instrument_csv(text: str, name: str) -> list[Instrument]:
    """Every instrument of a CSV file (header ``region,from,to,mwh,factor,kind[,reference]``).

    All or nothing: the first bad line raises, naming the file and the line.
    """
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in CSV_COLUMNS[:-1] if c not in header]
    if missing:
        raise InvalidInput(
            f"{name} line 1: the header lacks {', '.join(missing)}",
            fix=f"start the file with the header {','.join(CSV_COLUMNS)} (reference optional)",
        )
    instruments = []
    for number, raw in enumerate(reader, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        if None in raw:
            raise InvalidInput(f"{name} line {number}: more cells than the header has", fix="check the commas")
        try:
            instruments.append(
                parse_instrument(
                    row["region"], row["from"], row["to"], row["mwh"], row["factor"], row["kind"], row.get("reference")
                )
            )
        except InvalidInput as error:
            raise InvalidInput(f"{name} line {number}: {error.message}", fix=error.fix) from None
    if not instruments:
        raise InvalidInput(f"{name} has no instruments", fix=f"add lines under the header {','.join(CSV_COLUMNS)}")
    return instruments


def read_instrument_file(path: str | Path) -> list[Instrument]:
    """Parse an instruments CSV file (all or nothing)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{str(path)!r} cannot be read ({exc})", fix="give a UTF-8 CSV file") from None
    return parse_instrument_csv(text, str(path))


class InstrumentStore:
    """The instruments and residual-mix factors kept in a ledger's database."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def add(self, instruments: Iterable[Instrument]) -> list[Instrument]:
        """Record instruments in one transaction (all or none)."""
        added = list(instruments)
        with self.ledger.write() as session:
            for item in added:
                session.execute(
                    insert(InstrumentRow).values(**item.content() | _times(item), content_hash=item.content_hash)
                )
        return added

    def instruments(self, region: str | None = None) -> list[Stored[Instrument]]:
        """Every instrument (of a region), oldest first, each with its integrity."""
        query = select(InstrumentRow).order_by(InstrumentRow.recorded_at, InstrumentRow.instrument_id)
        if region is not None:
            query = query.where(InstrumentRow.region == region)
        with self.ledger.read() as session:
            rows = list(session.execute(query).scalars())
        return [_stored_instrument(row) for row in rows]

    def set_residual(self, mix: ResidualMix) -> ResidualMix:
        """Declare (or replace) a region's residual-mix factor."""
        with self.ledger.write() as session:
            session.execute(delete(ResidualMixRow).where(ResidualMixRow.region == mix.region))
            session.execute(
                insert(ResidualMixRow).values(
                    region=mix.region,
                    factor_g_per_kwh=mix.factor_g_per_kwh,
                    source=mix.source,
                    declared_at=mix.declared_at,
                    content_hash=mix.content_hash,
                )
            )
        return mix

    def residuals(self) -> dict[str, Stored[ResidualMix]]:
        """The declared residual-mix factors by region."""
        with self.ledger.read() as session:
            rows = list(session.execute(select(ResidualMixRow)).scalars())
        return {
            row.region: _stored(
                ResidualMix,
                {name: getattr(row, name) for name in ResidualMix.__dataclass_fields__},
                row.content_hash,
            )
            for row in rows
        }


def _times(item: Instrument) -> dict[str, Any]:
    return {"valid_from": item.valid_from, "valid_to": item.valid_to, "recorded_at": item.recorded_at}


def _stored_instrument(row: InstrumentRow) -> Stored[Instrument]:
    return _stored(Instrument, {name: getattr(row, name) for name in Instrument.__dataclass_fields__}, row.content_hash)


def _stored(cls: type[T], values: dict[str, Any], stored_hash: str) -> Stored[T]:
    try:
        return Stored(cls(**values), stored_hash)
    except InvalidInput as error:
        # Values greenflow would never have written: keep them as stored (unvalidated) and say so.
        raw = object.__new__(cls)
        for name, value in values.items():
            object.__setattr__(raw, name, value)
        return Stored(raw, stored_hash, problem=f"stored values are invalid: {error.message}")


def describe(stored: Sequence[Stored[Instrument]]) -> list[dict[str, Any]]:
    """JSON-safe rows for ``instruments list --json`` and reports."""
    return [
        item.value.content() | {"content_hash": item.stored_hash, "intact": item.intact, "problem": item.problem}
        for item in stored
    ]
