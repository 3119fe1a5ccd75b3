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

A run leaves its file *before* its command starts, marked with its owner (pid and process start time):
if greenflow is killed (``kill -9``, the OOM killer), that file is what remains, and a flush turns it
into an ``interrupted`` entry (start time and identity known, energy ``None`` with the reason) once
the owner is gone; a live owner's file is never written. When the run ends, its final measurement
replaces the file. A file the ledger can never take (a *permanent* error: not a spool file, a value
out of bounds written by an older greenflow, a budget or constraint the database refuses) is moved
to ``rejected/`` with its reason in ``<name>.reason`` beside it; a *transient* error (database down,
locked, schema to upgrade) keeps it for the next flush.

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
REJECTED = "rejected"
"""Sub-directory of a spool directory holding the files the ledger refused for good."""
KILLED = "greenflow run ended before the command did (killed: kill -9, OOM killer, machine stop)"
"""The error of an attempt recorded from the file of a run that never finished."""


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
    owner: dict[str, Any] | None = None
    """The process running the attempt, while it runs (``pid``, ``start``, ``host``); ``None`` once done."""
    decision: dict[str, Any] | None = None
    """The attempt's decision (``Decision.to_dict()``) when it was planned and reserved before it started."""

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
                "owner": self.owner,
                "decision": self.decision,
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
                owner=data.get("owner"),
                decision=data.get("decision"),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(f"spool file lacks {error}") from None


def in_progress(
    identity: dict[str, Any],
    spec: dict[str, Any],
    requested_at: datetime,
    started: datetime,
    *,
    decision: dict[str, Any] | None = None,
) -> SpooledRun:
    """What a run leaves before its command starts: if nothing replaces it, the attempt was interrupted."""
    import socket

    from greenflow.metering.measurement import ComponentEnergy, Measurement

    unknown = ComponentEnergy.missing(f"not measured: {KILLED}")
    measurement = Measurement(
        name=f"{identity.get('task_id')}#{identity.get('attempt')}",
        start=started,
        end=started,
        gpu=unknown,
        cpu=unknown,
        dram=unknown,
        host=socket.gethostname(),
    )
    return SpooledRun(
        identity=identity,
        spec=spec,
        requested_at=requested_at,
        started=started,
        measurement=measurement.to_dict(),
        outcome="interrupted",
        error=KILLED,
        owner=this_process(),
        decision=decision,
    )


def spool_dir(url: str | None = None) -> Path:
    """The spool directory of the ledger at ``url`` (``--ledger``), else ``$GREENFLOW_LEDGER_URL``/default."""
    root = os.environ.get(SPOOL_DIR_ENV, "").strip()
    if root:
        base = Path(root).expanduser()
    else:
        from platformdirs import user_data_path

        base = user_data_path("greenflow", appauthor=False) / "spool"
    return base / hashlib.sha256(ledger_url(url).encode()).hexdigest()[:16]


def spool(run: SpooledRun, directory: Path, *, path: Path | None = None, durable: bool = True) -> Path:
    """Write ``run`` into ``directory`` (over ``path`` if given) and return the file (complete or absent).

    ``durable`` syncs it to disk first. The in-progress file of a starting run skips that: it only has
    to outlive greenflow's process (the page cache does), and ``fsync`` would delay the command's start.
    """
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    final = path or directory / f"{utcnow():%Y%m%dT%H%M%S%fZ}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    temporary = directory / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    with open(temporary, "w", encoding="utf-8") as out:
        out.write(run.to_json())
        out.flush()
        if durable:
            os.fsync(out.fileno())
    os.replace(temporary, final)
    return final


def leave_trace(run: SpooledRun, directory: Path) -> Path:
    """Write the in-progress file of a run about to start; :class:`ConfigError` if the directory refuses it.

    Without it a killed greenflow would leave no trace, so the command does not start.
    """
    from greenflow.errors import ConfigError

    try:
        return spool(run, directory, durable=False)
    except OSError as error:
        raise ConfigError(
            f"cannot write the run's spool file in {directory}: {error.strerror or error}",
            fix=f"make it writable or set {SPOOL_DIR_ENV} to a writable directory",
        ) from None


def this_process() -> dict[str, Any]:
    """The owner record of the calling process: pid, start time (so a reused pid is told apart), host."""
    import socket

    return {"pid": os.getpid(), "start": _process_start(os.getpid()), "host": socket.gethostname()}


def owner_alive(owner: dict[str, Any]) -> bool:
    """Whether the process in ``owner`` (see :func:`this_process`) still runs.

    A file from another host cannot be judged from here: it counts as alive (flush it on that host).
    """
    import socket

    if owner.get("host") not in (None, socket.gethostname()):
        return True
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, someone else's
    start = _process_start(pid)
    if start is None:
        return _proc_state(pid) is None  # no /proc: trust kill(0)
    return start == owner.get("start") and _proc_state(pid) != "Z"  # a zombie has ended: only unreaped


def _stat_fields(pid: int) -> list[str] | None:
    # /proc/PID/stat: "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after
    # the last ")"; field 3 (state) is then index 0 and field 22 (starttime, clock ticks) index 19.
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()
    return fields if len(fields) > 19 else None


def _process_start(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return None if fields is None else fields[19]


def _proc_state(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return None if fields is None else fields[0]


def pending(directory: Path) -> list[Path]:
    """Spooled runs in ``directory``, oldest first."""
    try:
        return sorted(directory.glob("*.json"))
    except OSError:
        return []


@dataclass(frozen=True)
class Delivery:
    """What became of one spool file.

    ``written``: recorded and deleted; ``gone``: another writer recorded it; ``busy``: another writer
    holds it; ``running``: its run is still under way; ``failed``: a transient error, kept for the next
    flush; ``rejected``: the ledger can never take it, moved to ``moved_to`` with its reason beside it.
    """

    path: Path
    status: Literal["written", "gone", "busy", "running", "failed", "rejected"]
    entry: Entry | None = None
    reason: str | None = None
    moved_to: Path | None = None


@dataclass(frozen=True)
class FlushReport:
    """What :func:`flush` did with each file (see :class:`Delivery`)."""

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
    from greenflow.lifecycle import Decision, Lifecycle
    from greenflow.metering.measurement import Measurement
    from greenflow.spec import CarbonSpec

    requested = run.requested_at
    lifecycle = Lifecycle(
        CarbonSpec.from_kwargs(run.spec), Identity(**run.identity), ledger=ledger, clock=lambda: requested
    )
    # A run that planned (and reserved) before it started kept its decision: record that one, settling
    # its reservation; the others ran at once, which planning at the request time says again.
    decision = Decision.from_dict(run.decision) if run.decision else lifecycle.plan(requested_at=requested)
    return lifecycle.record(
        decision,
        Measurement.from_dict(run.measurement),
        outcome=run.outcome,
        error=run.error,
        started=run.started,
        end_known=run.owner is None,
    )


def deliver(path: Path, ledger: Ledger, *, wait: bool = True) -> Delivery:
    """Record the run in ``path`` and delete the file.

    A transient failure keeps the file for a later flush; a permanent one moves it to ``rejected/``.
    The file of a run still under way (its owner alive) is left alone.
    """
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
            if run.owner is not None and owner_alive(run.owner):
                return Delivery(path, "running", reason=f"its run (pid {run.owner.get('pid')}) is under way")
            entry = record(run, ledger)
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"
            if is_transient(error):  # the ledger may be down or busy: the next flush retries
                return Delivery(path, "failed", reason=reason)
            return Delivery(path, "rejected", reason=reason, moved_to=_reject(path, reason))
        path.unlink(missing_ok=True)
        return Delivery(path, "written", entry=entry)


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` may go away by itself (database down, locked, being upgraded, a full disk)."""
    from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from greenflow.errors import LedgerSchemaOutdated, LedgerUnavailable

    transient = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout, LedgerUnavailable)
    return isinstance(error, (*transient, LedgerSchemaOutdated, OSError, TimeoutError))


def _reject(path: Path, reason: str) -> Path:
    """Move ``path`` into ``rejected/`` beside a ``<name>.reason`` file saying why; returns the new path."""
    rejected = path.parent / REJECTED
    rejected.mkdir(exist_ok=True, mode=0o700)
    target = rejected / path.name
    (rejected / f"{path.name}.reason").write_text(f"{utcnow().isoformat()} {reason}\n", encoding="utf-8")
    os.replace(path, target)
    return target


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
    for rejected in (d for d in deliveries if d.status == "rejected"):
        _log(directory, f"{rejected.path.name} rejected, moved to {rejected.moved_to}: {rejected.reason}")
    return 1 if any(d.status in ("failed", "rejected") for d in deliveries) else 0


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
