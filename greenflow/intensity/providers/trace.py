"""Offline CSV traces: replay real intensity data with a settable "now".

Two file shapes:

* **series**: a timestamp column and one or more value columns (``timestamp,gco2_per_kwh_direct,
  gco2_per_kwh_lifecycle,estimated``). The points after "now" are served as the forecast (perfect
  knowledge); ``history()`` serves the same series as actuals.
* **snapshots**: ``issued_at,slot_start,value``, one forecast per ``issued_at``. The forecast is the latest
  snapshot issued at or before "now", so a replay sees what was really published, errors included;
  ``history()`` serves a separate actuals file.

Files are parsed once per process (keyed by path, size and mtime) into sorted, immutable points, and a
forecast is a slice found by bisection: replays call ``forecast()`` tens of thousands of times.

Shipped traces (``greenflow/data``) are found by short name: ``BR``, ``ES``, ``NO``, ``US-CAL-CISO``, ``GB``.

Per-region data: ``{region}`` in ``path``, ``column``, ``actuals`` or ``actuals_column`` is replaced by the
region's label, so ``path="/data/trace-{region}.csv"`` reads one file per region and ``column="{region}"``
reads one column per region of a single file (header ``timestamp,GB,NO``). One rule covers both shapes and
either file kind (series or snapshots); a region without its file or column is refused when the region is
validated (a spec's construction), naming the file.
"""

from __future__ import annotations

import csv
import functools
import itertools
import os
import string
import time
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from greenflow.clock import parse_time, require_aware, utcnow
from greenflow.errors import InvalidInput
from greenflow.intensity.forecast import EmissionFactor, Forecast, ForecastPoint, Signal, intensity_value
from greenflow.intensity.providers.base import check_hours, history_window

DATA_DIR = Path(__file__).resolve().parents[2] / "data"
_TIME_COLUMNS = ("timestamp", "datetime", "time", "slot_start", "start", "point_time", "period_start", "date")
_ISSUED_COLUMNS = ("issued_at", "generated_at")
_FLAG_COLUMNS = ("estimated", "is_estimated", "isestimated")
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_EM_ATTRIBUTION = "Electricity Maps (ODbL 1.0)"
_GB_ATTRIBUTION = "Contains data from the National Energy System Operator Carbon Intensity API."
REGION_PLACEHOLDER = "{region}"
"""Replaced by the region's label in the trace provider's ``path``, ``column``, ``actuals`` and ``actuals_column``."""


@dataclass(frozen=True)
class ShippedTrace:
    """A trace shipped in ``greenflow/data`` and its defaults."""

    file: str
    column: str
    attribution: str
    actuals: str | None = None
    actuals_column: str | None = None


SHIPPED: dict[str, ShippedTrace] = {
    **{
        zone: ShippedTrace(f"electricitymaps/{zone}_2021-2023_hourly.csv", "gco2_per_kwh_lifecycle", _EM_ATTRIBUTION)
        for zone in ("BR", "ES", "NO", "US-CAL-CISO")
    },
    "GB": ShippedTrace(
        "gb/forecasts.csv",
        "forecast_gco2_per_kwh",
        _GB_ATTRIBUTION,
        actuals="gb/actuals.csv",
        actuals_column="actual_gco2_per_kwh",
    ),
}
"""Short name -> shipped trace (the ``trace`` provider's regions when no path is given)."""


# -- loaded data ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Series:
    """Sorted, non-overlapping points with their start/end epochs, ready for bisection."""

    points: tuple[ForecastPoint, ...]
    starts: tuple[float, ...]
    ends: tuple[float, ...]

    def slice(self, begin: float, end: float) -> tuple[ForecastPoint, ...]:
        """The points overlapping [begin, end) (epoch seconds)."""
        return self.points[bisect_right(self.ends, begin) : bisect_left(self.starts, end)]

    @property
    def first(self) -> datetime:
        """Start of the first point."""
        return self.points[0].start

    @property
    def last(self) -> datetime:
        """End of the last point."""
        return self.points[-1].end


@dataclass(frozen=True)
class Snapshots:
    """Forecast snapshots ordered by issue time."""

    issued: tuple[float, ...]
    issued_at: tuple[datetime, ...]
    series: tuple[Series, ...]

    @functools.cached_property
    def span(self) -> tuple[datetime, datetime]:
        """Earliest start and latest end over all snapshots."""
        return min(s.first for s in self.series), max(s.last for s in self.series)

    def latest(self, moment: datetime) -> int:
        """Index of the last snapshot issued at or before ``moment`` (-1 if none)."""
        return bisect_right(self.issued, moment.timestamp()) - 1


@dataclass(frozen=True)
class LoadedTrace:
    """One trace file with its chosen value column."""

    path: Path
    column: str
    emission_factor: EmissionFactor
    series: Series | None = None
    snapshots: Snapshots | None = None


@dataclass(frozen=True)
class _Table:
    header: tuple[str, ...]
    columns: dict[str, tuple[str, ...]]
    time_column: str
    issued_column: str | None

    @property
    def value_columns(self) -> list[str]:
        skip = {self.time_column, self.issued_column}
        return [c for c in self.header if c not in skip and c.lower() not in _FLAG_COLUMNS]


def load_trace(path: str | Path, column: str | None = None, *, default_column: str | None = None) -> LoadedTrace:
    """Load (once per process) the trace at ``path`` with the value ``column``.

    Raises :class:`InvalidInput` naming the file and its columns when the column is missing, unknown or
    ambiguous, or when a row cannot be read.
    """
    resolved, stat, table = _open_table(path)
    chosen = _choose_column(resolved, table, column, default_column)
    return _build(str(resolved), stat.st_mtime_ns, stat.st_size, chosen)


def _open_table(path: str | Path) -> tuple[Path, os.stat_result, _Table]:
    resolved = Path(path).expanduser().resolve()
    try:
        stat = resolved.stat()
    except OSError:
        raise InvalidInput(f"trace file {str(path)!r} cannot be read", fix="give the path of a CSV file") from None
    return resolved, stat, _read_table(str(resolved), stat.st_mtime_ns, stat.st_size)


def region_template(value: str | Path | None, option: str) -> str | None:
    """``value`` as text, checked to hold no placeholder but ``{region}`` (``None`` stays ``None``).

    Raises :class:`InvalidInput` naming the option and its value for ``{zone}``, ``{region!r}``, ``{}``,
    an unmatched brace and the like: a typo there would otherwise read the wrong file or no file at all.
    """
    if value is None:
        return None
    text = str(value)
    fix = f"write {REGION_PLACEHOLDER} where the region's label goes (a literal brace is written twice: {{{{ }}}})"
    try:
        fields = [(name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(text)]
    except ValueError as exc:
        raise InvalidInput(f"{option}={text!r} is not a valid template ({exc})", fix=fix) from None
    for name, spec, conversion in fields:
        if name is not None and (name != "region" or spec or conversion):
            placeholder = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise InvalidInput(
                f"{option}={text!r} has the placeholder {placeholder}, not {REGION_PLACEHOLDER}", fix=fix
            )
    return text


def _has_placeholder(template: str | None) -> bool:
    return template is not None and any(name is not None for _, name, _, _ in string.Formatter().parse(template))


def _fill(template: str, label: str) -> str:
    return template.format(region=label)


@functools.lru_cache(maxsize=16)
def _read_table(path: str, mtime_ns: int, size: int) -> _Table:
    # mtime and size are part of the cache key so an edited file is read again.
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        try:
            header = tuple(name.strip() for name in next(reader))
        except StopIteration:
            raise InvalidInput(f"trace file {path!r} is empty", fix="give a CSV with a header row") from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InvalidInput(f"trace file {path!r} is not a CSV file ({exc})", fix="give a CSV file") from None
        try:
            rows = [row for row in reader if row]
        except (csv.Error, UnicodeDecodeError) as exc:
            raise InvalidInput(f"trace file {path!r} is not a CSV file ({exc})", fix="give a CSV file") from None
    lowered = [name.lower() for name in header]
    time_column = next((header[lowered.index(n)] for n in _TIME_COLUMNS if n in lowered), None)
    if time_column is None:
        raise InvalidInput(
            f"trace file {path!r} has no timestamp column (columns: {', '.join(header)})",
            fix=f"name the time column one of: {', '.join(_TIME_COLUMNS)}",
        )
    issued = next((header[lowered.index(n)] for n in _ISSUED_COLUMNS if n in lowered), None)
    for number, row in enumerate(rows, start=2):
        if len(row) != len(header):
            raise InvalidInput(
                f"trace file {path!r} line {number} has {len(row)} fields, the header has {len(header)}",
                fix="fix the CSV so every row has one field per column",
            )
    columns = {name: tuple(row[i] for row in rows) for i, name in enumerate(header)}
    return _Table(header=header, columns=columns, time_column=time_column, issued_column=issued)


_EM_DEFAULT_COLUMN = "gco2_per_kwh_lifecycle"


def _choose_column(path: Path, table: _Table, column: str | None, default: str | None) -> str:
    values = table.value_columns
    if column is not None:
        if column in values:
            return column
        raise InvalidInput(
            f"trace file {path.name!r} has no value column {column!r}",
            fix=f"pick one of its value columns: {', '.join(values) or '(none)'}",
        )
    if len(values) == 1:
        return values[0]
    if default in values and default is not None:
        return default
    if _EM_DEFAULT_COLUMN in values:
        # An Electricity Maps export: take life-cycle factors, as Electricity Maps' own API does by default.
        return _EM_DEFAULT_COLUMN
    if not values:
        raise InvalidInput(
            f"trace file {path.name!r} has no value column (columns: {', '.join(table.header)})",
            fix="add a column with gCO2e/kWh values next to the timestamp",
        )
    raise InvalidInput(
        f"trace file {path.name!r} has several value columns: {', '.join(values)}",
        fix="pick one with --column NAME (column=... in Python)",
    )


@functools.lru_cache(maxsize=32)
def _build(path: str, mtime_ns: int, size: int, column: str) -> LoadedTrace:
    table = _read_table(path, mtime_ns, size)
    name = Path(path).name
    times = _parse_times(table.columns[table.time_column], name, table.time_column)
    values = _parse_values(table.columns[column], name, column)
    flag = next((c for c in table.header if c.lower() in _FLAG_COLUMNS), None)
    flags = [v.strip().lower() in _TRUE for v in table.columns[flag]] if flag else [False] * len(times)
    factor: EmissionFactor = (
        "lifecycle" if "lifecycle" in column.lower() else "direct" if "direct" in column.lower() else "unknown"
    )
    if table.issued_column is None:
        series = _series(list(zip(times, values, flags, strict=True)), name)
        return LoadedTrace(path=Path(path), column=column, emission_factor=factor, series=series)
    issued = _parse_times(table.columns[table.issued_column], name, table.issued_column)
    groups: dict[datetime, list[tuple[datetime, float | None, bool]]] = {}
    for when, row in zip(issued, zip(times, values, flags, strict=True), strict=True):
        groups.setdefault(when, []).append(row)
    ordered = sorted(groups)
    step = _step([t for when in ordered for t in sorted(r[0] for r in groups[when])])
    snapshots = Snapshots(
        issued=tuple(w.timestamp() for w in ordered),
        issued_at=tuple(ordered),
        series=tuple(_series(groups[w], f"{name} (issued {w.isoformat()})", step) for w in ordered),
    )
    return LoadedTrace(path=Path(path), column=column, emission_factor=factor, snapshots=snapshots)


def _parse_times(raw: Sequence[str], name: str, column: str) -> list[datetime]:
    parsed = []
    for number, text in enumerate(raw, start=2):
        try:
            moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput(
                f"trace file {name!r} line {number}: {column}={text!r} is not an ISO 8601 time",
                fix="write times like 2022-06-01T00:00:00Z",
            ) from None
        if moment.tzinfo is None:
            raise InvalidInput(
                f"trace file {name!r} line {number}: {column}={text!r} has no time zone",
                fix="write times in UTC with a Z, like 2022-06-01T00:00:00Z",
            )
        parsed.append(moment.astimezone(UTC))
    return parsed


def _parse_values(raw: Sequence[str], name: str, column: str) -> list[float | None]:
    parsed: list[float | None] = []
    for number, text in enumerate(raw, start=2):
        text = text.strip()
        if not text or text.lower() in ("nan", "null", "none", "na"):
            parsed.append(None)  # missing stays missing, never 0
            continue
        try:
            value = float(text)
        except ValueError:
            raise InvalidInput(
                f"trace file {name!r} line {number}: {column}={text!r} is not a number",
                fix=f"check that {column!r} holds gCO2e/kWh values (or pick another column)",
            ) from None
        # Infinite, negative or absurd values are refused here, naming the line (NaN text is "missing").
        parsed.append(intensity_value(value, f"trace file {name!r} line {number}: {column}"))
    return parsed


def _step(starts: list[datetime]) -> timedelta:
    """The usual slot length: the most common gap between consecutive distinct starts."""
    gaps = Counter(b - a for a, b in itertools.pairwise(starts) if b > a)
    if not gaps:
        raise InvalidInput("a trace needs at least two distinct times", fix="give a longer trace")
    return gaps.most_common(1)[0][0]


def _series(rows: list[tuple[datetime, float | None, bool]], name: str, step: timedelta | None = None) -> Series:
    rows = sorted(rows, key=lambda r: r[0])
    for before, after in itertools.pairwise(rows):
        if before[0] == after[0]:
            raise InvalidInput(f"trace {name!r} has two rows for {after[0].isoformat()}", fix="keep one row per time")
    step = step or _step([r[0] for r in rows])
    points = []
    for index, (start, value, estimated) in enumerate(rows):
        end = start + step
        if index + 1 < len(rows):
            end = min(end, rows[index + 1][0])  # an irregular, shorter slot must not overlap the next
        points.append(ForecastPoint(start=start, end=end, value=value, estimated=estimated))
    return Series(
        points=tuple(points),
        starts=tuple(p.start.timestamp() for p in points),
        ends=tuple(p.end.timestamp() for p in points),
    )


# -- the provider ----------------------------------------------------------------------------------------
class TraceProvider:
    """Serves an offline trace as forecasts and actuals, with a replay clock.

    ``path`` is a CSV (series or snapshots); without it the region names a shipped trace (``ES``,
    ``GB``...). ``now`` fixes the replay time (``set_now`` moves it); with ``speed`` the replay time also
    advances ``speed`` times faster than the wall clock; ``clock`` replaces all of that. Without any,
    "now" is the real time.
    """

    name = "trace"
    # A replay moves "now" at will, so a cached answer would be wrong: the cache never keeps traces.
    refresh_interval = timedelta(0)

    def __init__(
        self,
        *,
        path: str | Path | None = None,
        region: str | None = None,
        column: str | None = None,
        actuals: str | Path | None = None,
        actuals_column: str | None = None,
        now: datetime | str | None = None,
        speed: float | None = None,
        replay_started_at: datetime | str | None = None,
        clock: Callable[[], datetime] | None = None,
        signal: str = "average",
    ) -> None:
        if signal not in ("average", "marginal"):
            raise InvalidInput(f"signal={signal!r} is not 'average' or 'marginal'", fix="say which the trace holds")
        self.signal: Signal = "average" if signal == "average" else "marginal"
        if speed is not None and not speed > 0:
            raise InvalidInput(
                f"speed={speed!r} must be greater than zero", fix="e.g. speed=60 for a minute per second"
            )
        # Templates, "{region}" replaced per region (see REGION_PLACEHOLDER); a plain value is its own filling.
        self._path_template = region_template(path, "path")
        self._column = region_template(column, "column")
        self._actuals_template = region_template(actuals, "actuals")
        self._actuals_column = region_template(actuals_column, "actuals_column")
        self._path = Path(path) if path is not None else None
        self._per_region = any(
            _has_placeholder(t)
            for t in (self._path_template, self._column, self._actuals_template, self._actuals_column)
        )
        if self._per_region and self._path is None:
            raise InvalidInput(
                f"{REGION_PLACEHOLDER} is only for your own files, and no path was given",
                fix='give path=... (e.g. path="/data/trace-{region}.csv" or a CSV with one column per region)',
            )
        self._speed = speed
        self._clock = clock
        self._now: datetime | None = None
        self._loaded: dict[str, tuple[LoadedTrace, str | None]] = {}
        self._wall_at_set = 0.0
        # A replay shared by several processes (a worker, the triggerer) must agree on when it began:
        # with ``replay_started_at`` (a wall-clock time) every process maps wall time to trace time alike.
        self._started_wall: datetime | None = None
        if now is not None:
            self.set_now(now)
        if replay_started_at is not None:
            self._started_wall = parse_time(replay_started_at, "replay_started_at")
        self.region = self.validate_region(region) if region is not None else None
        # Load what can be loaded now so a wrong file or column fails at construction, not mid-run.
        if self._path is not None and not self._per_region:
            self._forecast_trace(self.region or self._path.stem)
        elif self.region is not None:
            self._forecast_trace(self.region)
        elif self._path_template is not None and not _has_placeholder(self._path_template):
            _open_table(_fill(self._path_template, ""))  # one file, a column per region: it is known now

    def __repr__(self) -> str:
        return f"TraceProvider(path={str(self._path) if self._path else None!r}, region={self.region!r})"

    # -- replay clock ------------------------------------------------------------------------------
    def set_now(self, moment: datetime | str) -> None:
        """Move the replay clock to ``moment`` (aware, or ISO 8601 text with a zone)."""
        self._now = parse_time(moment, "now")
        self._wall_at_set = time.monotonic()
        self._started_wall = None

    @property
    def speed(self) -> float | None:
        """How many replay seconds pass per wall-clock second (``None``: the replay clock stands still)."""
        return self._speed

    @property
    def replaying(self) -> bool:
        """True when "now" is a replay time rather than the real time."""
        return self._clock is not None or self._now is not None

    @property
    def now(self) -> datetime:
        """The current replay time."""
        if self._clock is not None:
            return require_aware(self._clock(), "trace clock")
        if self._now is None:
            return utcnow()
        if self._speed is None:
            return self._now
        if self._started_wall is not None:
            return self._now + (utcnow() - self._started_wall) * self._speed
        return self._now + timedelta(seconds=(time.monotonic() - self._wall_at_set) * self._speed)

    # -- interface ---------------------------------------------------------------------------------
    def validate_region(self, region: str) -> str:
        """With a path: any non-empty label. Without: a shipped trace's short name.

        With ``{region}`` in the path or a column, the region's own file and column must exist: a region
        without data is refused here, when a spec is built, rather than when its task plans.
        """
        label = (region or "").strip()
        if self._path is not None:
            if not label:
                raise InvalidInput("the trace provider needs a region label", fix="give --region, e.g. the zone name")
            if self._per_region and label not in self._loaded:
                self._check_label(label)
                self._forecast_trace(label)
                if self._actuals_template is not None and (
                    _has_placeholder(self._actuals_template) or _has_placeholder(self._actuals_column)
                ):
                    self._actuals_trace(label)
            return label
        upper = label.upper()
        if upper in SHIPPED:
            return upper
        raise InvalidInput(
            f"no shipped trace for region {region!r}",
            fix=f"use one of {', '.join(SHIPPED)}, or give a CSV with --trace PATH (path=... in Python)",
        )

    def forecast(self, region: str, *, start: datetime | None = None, hours: float = 48) -> Forecast:
        """The trace from ``start`` (default: now) for ``hours``, as known at the replay time."""
        label = self.validate_region(region)
        hours = check_hours(hours, self.name)
        trace, attribution = self._forecast_trace(label)
        now = self.now
        begin = now if start is None else require_aware(start, "start")
        end = begin + timedelta(hours=hours)
        meta: dict[str, Any] = {"trace": trace.path.name, "column": trace.column, "now": now.isoformat()}
        if attribution:
            meta["attribution"] = attribution
        if trace.snapshots is not None:
            index = trace.snapshots.latest(now)
            if index < 0:
                raise InvalidInput(
                    f"now={now.isoformat()} is before the first forecast in {trace.path.name} "
                    f"(issued {trace.snapshots.issued_at[0].isoformat()})",
                    fix="replay from a later --now",
                )
            series = trace.snapshots.series[index]
            generated = trace.snapshots.issued_at[index]
            # The outage policy judges the snapshot's age by this (not by when it was read): see
            # greenflow.intensity.policy.SNAPSHOT_ISSUED_AT and max_staleness.
            meta["snapshot_issued_at"] = generated.isoformat()
            # A snapshot may end before "now" (the source skipped days): that is an empty forecast, which
            # is the truth of that moment. Only a window past every snapshot is a caller's mistake.
            self._check_inside(trace, begin, end, *trace.snapshots.span)
        else:
            assert trace.series is not None  # a trace is either series or snapshots
            series, generated = trace.series, now
            self._check_inside(trace, begin, end, series.first, series.last)
        return Forecast(
            region=label,
            provider=self.name,
            signal=self.signal,
            generated_at=generated,
            points=series.slice(begin.timestamp(), end.timestamp()),
            emission_factor=trace.emission_factor,
            meta=meta,
        )

    def history(self, region: str, start: datetime, end: datetime) -> Forecast:
        """The actuals over [start, end): the series itself, or the actuals file of a snapshot trace."""
        label = self.validate_region(region)
        start, end = history_window(start, end)
        trace, attribution = self._actuals_trace(label)
        assert trace.series is not None  # actuals are always a series
        meta: dict[str, Any] = {"trace": trace.path.name, "column": trace.column, "kind": "actual"}
        if attribution:
            meta["attribution"] = attribution
        return Forecast(
            region=label,
            provider=self.name,
            signal=self.signal,
            generated_at=self.now,
            points=trace.series.slice(start.timestamp(), end.timestamp()),
            emission_factor=trace.emission_factor,
            meta=meta,
        )

    def issued_history(self, region: str, start: datetime, end: datetime) -> Forecast:
        """What the trace had forecast for each slot in [start, end) when the slot began.

        For a snapshot trace, each slot's value in the latest snapshot issued at or before the slot's
        start: what a replay at that moment was served, errors included. A series trace serves its own
        values as the forecast, so unless its actuals are a separate file its forecasts have no errors
        to learn, and it is refused.
        """
        label = self.validate_region(region)
        start, end = history_window(start, end)
        trace, attribution = self._forecast_trace(label)
        meta: dict[str, Any] = {"trace": trace.path.name, "column": trace.column, "kind": "issued forecast"}
        if attribution:
            meta["attribution"] = attribution
        if trace.snapshots is not None:
            snapshots = trace.snapshots
            points: list[ForecastPoint] = []
            for index, series in enumerate(snapshots.series):
                # Snapshot ``index`` is the latest one for the slots starting in [its issue, the next issue).
                begin = max(snapshots.issued[index], start.timestamp())
                until = snapshots.issued[index + 1] if index + 1 < len(snapshots.issued) else end.timestamp()
                until = min(until, end.timestamp())
                if begin < until:
                    points.extend(p for p in series.slice(begin, until) if begin <= p.start.timestamp() < until)
        else:
            assert trace.series is not None  # a trace is either series or snapshots
            if self._actuals_trace(label)[0].path == trace.path:
                raise InvalidInput(
                    f"trace {trace.path.name!r} serves its actuals as the forecast: it has no forecast errors to learn",
                    fix="replay a trace of forecast snapshots (an issued_at column, e.g. region GB) or give "
                    "the actuals as a separate file (actuals=PATH)",
                )
            points = list(trace.series.slice(start.timestamp(), end.timestamp()))
        return Forecast(
            region=label,
            provider=self.name,
            signal=self.signal,
            generated_at=self.now,
            points=tuple(points),
            emission_factor=trace.emission_factor,
            meta=meta,
        )

    # -- internals -----------------------------------------------------------------------------------
    def _forecast_trace(self, label: str) -> tuple[LoadedTrace, str | None]:
        # Kept per provider so a replay's forecast() calls cost no file-system lookups at all.
        loaded = self._loaded.get(label)
        if loaded is None:
            loaded = self._loaded[label] = self._load_forecast_trace(label)
        return loaded

    def _load_forecast_trace(self, label: str) -> tuple[LoadedTrace, str | None]:
        if self._path_template is not None:
            return self._load_own(label, self._path_template, self._column, "path", "column"), None
        shipped = SHIPPED[label]
        return load_trace(DATA_DIR / shipped.file, self._column, default_column=shipped.column), shipped.attribution

    def _actuals_trace(self, label: str) -> tuple[LoadedTrace, str | None]:
        if self._actuals_template is not None:
            trace = self._load_own(label, self._actuals_template, self._actuals_column, "actuals", "actuals_column")
            return trace, None
        if self._path is None and SHIPPED[label].actuals is not None:
            shipped = SHIPPED[label]
            assert shipped.actuals is not None
            trace = load_trace(DATA_DIR / shipped.actuals, self._actuals_column, default_column=shipped.actuals_column)
            return trace, shipped.attribution
        trace, attribution = self._forecast_trace(label)
        if trace.snapshots is not None:
            raise InvalidInput(
                f"trace {trace.path.name!r} holds forecast snapshots, not actuals",
                fix="give the actuals as a separate series file (actuals=PATH)",
            )
        return trace, attribution

    def _check_label(self, label: str) -> None:
        # A label becomes part of a file name: a separator would read another directory's file.
        in_file_name = _has_placeholder(self._path_template) or _has_placeholder(self._actuals_template)
        if in_file_name and (label in (".", "..") or any(sep and sep in label for sep in (os.sep, os.altsep, "/"))):
            raise InvalidInput(
                f"region {label!r} cannot name a file in a {REGION_PLACEHOLDER} path",
                fix="use region labels without '/' (they are put into the file name)",
            )

    def _load_own(
        self, label: str, path_template: str, column_template: str | None, path_option: str, column_option: str
    ) -> LoadedTrace:
        """The user's file for ``label``, with a message naming the region when its file or column is missing."""
        path = Path(_fill(path_template, label)).expanduser()
        if _has_placeholder(path_template) and not path.is_file():
            raise InvalidInput(
                f"no trace file for region {label!r}: {str(path)!r} does not exist ({path_option}={path_template!r})",
                fix=f"write that region's trace to {str(path)!r}, or leave {label!r} out of the regions",
            )
        column = None if column_template is None else _fill(column_template, label)
        if column is not None and _has_placeholder(column_template):
            resolved, _, table = _open_table(path)
            if column not in table.value_columns:
                raise InvalidInput(
                    f"trace file {resolved.name!r} has no column {column!r} for region {label!r} "
                    f"({column_option}={column_template!r})",
                    fix=f"add a {column!r} column, or plan only the regions it has: "
                    f"{', '.join(table.value_columns) or '(none)'}",
                )
        return load_trace(path, column)

    def _check_inside(
        self, trace: LoadedTrace, begin: datetime, end: datetime, first: datetime, last: datetime
    ) -> None:
        if begin >= last or end <= first:
            raise InvalidInput(
                f"the window from {begin.isoformat()} is outside trace {trace.path.name} "
                f"({first.isoformat()} to {last.isoformat()})",
                fix="give --now (or start) inside the trace",
            )
