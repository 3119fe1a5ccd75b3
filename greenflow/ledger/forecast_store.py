"""The forecast cache's shared layer on the ledger database: one fetch per region per refresh, fleet-wide.

Every worker pointing at the same ledger sees the forecasts any of them fetched, and a lease (an atomic
conditional UPDATE) makes sure only one process refreshes a key at a time while the others wait for
its result instead of calling the provider too.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from greenflow.clock import require_aware, utcnow
from greenflow.intensity.forecast import Forecast
from greenflow.ledger.models import ForecastCacheRow
from greenflow.ledger.store import Ledger


class LedgerForecastStore:
    """:class:`greenflow.intensity.cache.SharedForecastStore` backed by the ledger's ``forecast_cache`` table."""

    def __init__(self, ledger: Ledger, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.ledger = ledger
        self._clock = clock

    def load(self, key: str) -> tuple[Forecast, datetime] | None:
        """The stored forecast for ``key`` and when it was fetched, or ``None``."""
        with self.ledger.read() as session:
            row = session.execute(
                select(ForecastCacheRow.payload, ForecastCacheRow.fetched_at).where(ForecastCacheRow.cache_key == key)
            ).one_or_none()
        if row is None or row.payload is None or row.fetched_at is None:
            return None
        return Forecast.from_dict(row.payload), row.fetched_at

    def save(self, key: str, forecast: Forecast, fetched_at: datetime) -> None:
        """Store ``forecast`` for ``key``, unless a newer fetch is already stored."""
        fetched_at = require_aware(fetched_at, "fetched_at")
        with self.ledger.write() as session:
            self._ensure_row(session, key)
            session.execute(
                update(ForecastCacheRow)
                .where(
                    ForecastCacheRow.cache_key == key,
                    or_(ForecastCacheRow.fetched_at.is_(None), ForecastCacheRow.fetched_at <= fetched_at),
                )
                .values(payload=forecast.to_dict(), fetched_at=fetched_at)
            )

    def try_lease(self, key: str, owner: str, until: datetime) -> bool:
        """Take the fetch lease for ``key`` until ``until``: true if free, expired, or already ``owner``'s."""
        until = require_aware(until, "until")
        with self.ledger.write() as session:
            self._ensure_row(session, key)
            taken = session.execute(
                update(ForecastCacheRow)
                .where(
                    ForecastCacheRow.cache_key == key,
                    or_(
                        ForecastCacheRow.lease_owner.is_(None),
                        ForecastCacheRow.lease_until <= self._clock(),
                        ForecastCacheRow.lease_owner == owner,
                    ),
                )
                .values(lease_owner=owner, lease_until=until)
            )
            return bool(taken.rowcount)  # type: ignore[attr-defined]

    def release_lease(self, key: str, owner: str) -> None:
        """Give the lease back (only if ``owner`` holds it)."""
        with self.ledger.write() as session:
            session.execute(
                update(ForecastCacheRow)
                .where(ForecastCacheRow.cache_key == key, ForecastCacheRow.lease_owner == owner)
                .values(lease_owner=None, lease_until=None)
            )

    @staticmethod
    def _ensure_row(session: Session, key: str) -> None:
        dialect = session.get_bind().dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        session.execute(insert(ForecastCacheRow).values(cache_key=key).on_conflict_do_nothing())
