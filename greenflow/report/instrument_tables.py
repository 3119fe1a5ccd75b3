"""The instruments' tables in the ledger database (migration 0005 creates them)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, String
from sqlalchemy.orm import Mapped, mapped_column

from greenflow.ledger.models import Base


class InstrumentRow(Base):
    """One contractual instrument: a volume of energy at a factor, valid in a region over a span."""

    __tablename__ = "energy_instruments"

    instrument_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    region: Mapped[str] = mapped_column(String(64))
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime]
    mwh: Mapped[float] = mapped_column(Float)
    factor_g_per_kwh: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(32))
    reference: Mapped[str | None] = mapped_column(String(255))
    recorded_at: Mapped[datetime]
    content_hash: Mapped[str] = mapped_column(String(64))


class ResidualMixRow(Base):
    """The residual-mix factor the user declared for a region (the energy no instrument covers)."""

    __tablename__ = "residual_mix_factors"

    region: Mapped[str] = mapped_column(String(64), primary_key=True)
    factor_g_per_kwh: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(255))
    declared_at: Mapped[datetime]
    content_hash: Mapped[str] = mapped_column(String(64))
