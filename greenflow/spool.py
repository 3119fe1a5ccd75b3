"""Runs measured by ``greenflow run`` and not yet written to the ledger: one JSON file each, nothing lost.

Importing the ledger (SQLAlchemy) costs ~0.3 s, more than the whole budget ``greenflow run`` has for a
trivial command. So the launcher measures the command first and hands the ledger write over through a
*spool file*: written atomically (temporary name, ``fsync``, rename) before greenflow exits, deleted
only after the entry is committed. Whoever writes it (the launcher itself, a detached writer process,
``greenflow ledger flush``) first takes an exclusive ``flock`` on the file, so a run is recorded once;
the ledger's per-attempt idempotency covers a writer killed between the commit and the delete.

Files live in ``$GREENFLOW_SPOOL_DIR`` (default: ``spool`` in greenflow's user data directory), in one
sub-directory per ledger URL (named by a hash of it: the URL, which may hold a password, is never
written to disk). Credentials among the provider options are left out of the files.

This module imports nothing heavy at import time; :func:`record` and :func:`flush` import the ledger.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from greenflow.clock import parse_time, utcnow
from greenflow.config import LEDGER_URL_ENV, ledger_url

if TYPE_CHECKING:
    from greenflow.ledger import Entry, Ledger

SPOOL_DIR_ENV = "GREENFLOW_SPOOL_DIR"
FORMAT_VERSION = 1
# Credentials a provider may take: never written to a spool file (the ledger leaves them out too).
_SECRET_OPTIONS = frozenset({"token", "password", "api_key", "auth_token"})
# How long `flush` waits for a writer that holds a file's lock before reporting it as busy.
_LOCK_WAIT_S = 120.0

Outcome = Literal["failed", "interrupted"]


@dataclass(frozen=True)
class SpooledRun:
    """Everything :meth:`~greenflow.lifecycle.Lifecycle.record` needs, as plain data."""

    identity: dict[str, Any]
    spec: dict[str, Any]
    requested_at: datetime
    started: datetime
    measurement: dict[str, Any]
    outcome: Outcome | None = None
    error: str | None = None

    def to_json(self) -> str:
        """The file's content (``version`` first, so a future format can be told apart)."""
        spec = dict(self.spec)
        spec["provider_options"] = {
            k: v for k, v in dict(spec.get("provider_options") or {}).items() if k not in _SECRET_OPTIONS
        }
        return json.dumps(
            {
                "version": FORMAT_VERSION,
                "identity": self.identity,
                "spec": spec,
                "requested_at": self.requested_at.isoformat(),
                "started": self.started.isoformat(),
                "measurement": self.measurement,
                "outcome": self.outcome,
                "error": self.error,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SpooledRun:
        """Inverse of :meth:`to_json`; ``ValueError`` for a file greenflow did not write."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != FORMAT_VERSION:
            raise ValueError(f"not a greenflow spool file of version {FORMAT_VERSION}")
        if data.get("outcome") not in (None, "failed", "interrupted"):
            raise ValueError(f"spool file has an unknown outcome {data.get('outcome')!r}")
        try:
            return cls(
                identity=dict(data["identity"]),
                spec=dict(data["spec"]),
                requested_at=parse_time(data["requested_at"], "requested_at"),
                started=parse_time(data["started"], "started"),
                measurement=dict(data["measurement"]),
                outcome=data.get("outcome"),
                error=data.get("error"),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"spool file lacks {error}") from None


def spool_dir(url: str | None = None) -> Path:
    """The spool directory of the ledger at ``url`` (``--ledger``), else ``$GREENFLOW_LEDGER_URL``/default."""
    root = os.environ.get(SPOOL_DIR_ENV, "").strip()
    if root:
        base = Path(root).expanduser()
    else:
        from platformdirs import user_data_path

        base = user_data_path("greenflow", appauthor=False) / "spool"
    return base / hashlib.sha256(ledger_url(url).encode()).hexdigest()[:16]


def spool(run: SpooledRun, directory: Path) -> Path:
    """Write ``run`` durably into ``directory`` and return the file (complete, or not there at all)."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    name = f"{utcnow():%Y%m%dT%H%M%S%fZ}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    temporary = directory / f".{name}.tmp"
    with open(temporary, "w", encoding="utf-8") as out:
        out.write(run.to_json())
        out.flush()
        os.fsync(out.fileno())
    final = directory / name
    os.replace(temporary, final)
    return final


def pending(directory: Path) -> list[Path]:
    """Spooled runs in ``directory``, oldest first."""
    try:
        return sorted(directory.glob("*.json"))
    except OSError:
        return []


@dataclass(frozen=True)
class Delivery:
    """What became of one spool file."""

    path: Path
    status: Literal["written", "gone", "busy", "failed"]
    entry: Entry | None = None
    reason: str | None = None


@dataclass(frozen=True)
class FlushReport:
    """What :func:`flush` did: the files written, those another writer held, those that failed (kept)."""

    deliveries: tuple[Delivery, ...] = field(default_factory=tuple)

    def count(self, status: str) -> int:
        """How many files ended with ``status``."""
        return sum(1 for d in self.deliveries if d.status == status)


def record(run: SpooledRun, ledger: Ledger) -> Entry:
    """Write the ledger entry of ``run``, exactly as the lifecycle would have at the time it ran.

    The lifecycle's clock is pinned to the request time, so the decision says "ran at once" at that
    time even when the write happens later. Idempotent per attempt.
    """
    from greenflow.ledger import Identity
    from greenflow.lifecycle import Lifecycle
    from greenflow.metering.measurement import Measurement
    from greenflow.spec import CarbonSpec

    requested = run.requested_at
    lifecycle = Lifecycle(
        CarbonSpec.from_kwargs(run.spec), Identity(**run.identity), ledger=ledger, clock=lambda: requested
    )
    decision = lifecycle.plan(requested_at=requested)
    return lifecycle.record(
        decision,
        Measurement.from_dict(run.measurement),
        outcome=run.outcome,
        error=run.error,
        started=run.started,
    )


def deliver(path: Path, ledger: Ledger, *, wait: bool = True) -> Delivery:
    """Record the run in ``path`` and delete the file; a failure keeps the file for a later flush."""
    try:
        handle = open(path, encoding="utf-8")  # noqa: SIM115 - closed by the `with` below, once opened
    except FileNotFoundError:
        return Delivery(path, "gone")  # another writer recorded it
    with handle:
        if not _lock(handle, wait=wait):
            return Delivery(path, "busy", reason="another writer holds it")
        if not _still_there(path, handle):
            return Delivery(path, "gone")  # recorded by the writer we waited for
        try:
            run = SpooledRun.from_json(handle.read())
            entry = record(run, ledger)
        except Exception as error:  # kept for later: the ledger may be down, the next flush retries
            return Delivery(path, "failed", reason=f"{type(error).__name__}: {error}")
        path.unlink(missing_ok=True)
        return Delivery(path, "written", entry=entry)


def flush(ledger: Ledger, directory: Path, *, wait: bool = True) -> FlushReport:
    """Deliver every spooled run in ``directory``; ``wait`` waits for files another writer holds."""
    return FlushReport(tuple(deliver(path, ledger, wait=wait) for path in pending(directory)))


def start_writer(directory: Path, url: str | None, path: Path | None = None) -> None:
    """Start a detached process that records ``path`` (if given), then whatever else is spooled.

    It runs in its own session with no terminal and none of our standard streams, so neither a shell,
    ``$(...)`` nor an orchestrator reading our output waits for it.
    """
    env = dict(os.environ)
    if url:
        env[LEDGER_URL_ENV] = url  # through the environment: a password never shows in `ps`
    args = [sys.executable, "-m", "greenflow.spool", str(directory)]
    if path is not None:
        args.append(str(path))
    subprocess.Popen(
        args,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def main(argv: list[str] | None = None) -> int:
    """The detached writer: ``python -m greenflow.spool DIRECTORY [FILE]``; failures go to ``writer.log``."""
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0])
    first = Path(args[1]) if len(args) > 1 else None
    try:
        from greenflow.ledger import Ledger

        ledger = Ledger()
        deliveries = [deliver(first, ledger)] if first is not None else []
        deliveries += flush(ledger, directory, wait=False).deliveries
        ledger.close()
    except Exception as error:
        _log(directory, f"cannot open the ledger: {type(error).__name__}: {error}")
        return 1
    for failed in (d for d in deliveries if d.status == "failed"):
        _log(directory, f"{failed.path.name} kept: {failed.reason}")
    return 1 if any(d.status == "failed" for d in deliveries) else 0


def _log(directory: Path, line: str) -> None:
    with contextlib.suppress(OSError), open(directory / "writer.log", "a", encoding="utf-8") as out:
        out.write(f"{utcnow().isoformat()} {line}\n")


def _lock(handle: IO[str], *, wait: bool) -> bool:
    give_up = time.monotonic() + (_LOCK_WAIT_S if wait else 0.0)
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= give_up:
                return False
            time.sleep(0.05)


def _still_there(path: Path, handle: IO[str]) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
    except FileNotFoundError:
        return False


if __name__ == "__main__":
    raise SystemExit(main())
