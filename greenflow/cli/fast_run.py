"""``greenflow run -- CMD`` without Typer or the ledger: the launcher's fast path.

Typer, Rich and SQLAlchemy cost ~0.4 s to import, more than ``greenflow run`` may add to a trivial
command (300 ms). So :mod:`greenflow.cli.launcher` parses ``run`` here first. When it has nothing to plan
or reserve (no ``--region``, ``--budget`` or ``--decision``), it validates its arguments (the same
:meth:`CarbonSpec.declare` at ``"run"`` the full command uses), meters the command and *spools* the
measurement (:mod:`greenflow.spool`) before exiting with the command's code. The ledger entry is then written:

* in this process, before exiting, when the ledger has begun opening: it is opened in a background thread
  once the command has run for :data:`WARM_UP_AFTER_S`, so a real command pays at most the rest of the
  opening and the write itself (less than a writer process that would open it again from nothing);
* by a detached writer process when the command ended before that (``greenflow ledger flush``
  waits for it; a writer that dies leaves the spool file for the next flush: nothing is lost);
* always in this process with ``--ledger-write wait``, which ``auto`` (the default) picks where the
  command's end may tear everything down: PID 1 of a container, Kubernetes, a Slurm job.

Before the command starts, the attempt's spool file is written marked "in progress" (its owner's pid
and start time), and the command is started to die with greenflow (``PR_SET_PDEATHSIG`` on Linux): a
``kill -9`` of greenflow leaves that file, which ``greenflow ledger flush`` records as ``interrupted``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from greenflow.cli.attempt import Attempt, attempt_from
from greenflow.cli.flags import FlagKind, flag_kinds, given_options
from greenflow.cli.forwarding import SignalForwarder
from greenflow.cli.printable import printable
from greenflow.cli.write_mode import write_mode
from greenflow.clock import utcnow
from greenflow.errors import GreenflowError, InvalidInput
from greenflow.units import format_energy

if TYPE_CHECKING:
    from greenflow.ledger import Entry, Ledger
    from greenflow.metering.measurement import Measurement
    from greenflow.spec import CarbonSpec
    from greenflow.spool import Delivery

# A command still running after this long gets the ledger opened alongside it, so that its entry is
# written before greenflow exits; shorter ones hand the write to a detached writer instead.
WARM_UP_AFTER_S = 0.2

# `greenflow run` options: flag -> (keyword, kind): the options table's run flags (greenflow.cli.flags) and
# the command's own. A test compares them with greenflow.cli.run.run's; anything else goes to Typer.
_RUN_OPTIONS: dict[str, tuple[str, FlagKind]] = {
    "--workflow": ("workflow", "str"),
    "--run-id": ("run_id", "str"),
    "--task": ("task", "str"),
    "--attempt": ("attempt", "int"),
    "--quiet": ("quiet", "flag"),
    "-q": ("quiet", "flag"),
    "--decision": ("decision_source", "str"),
    "--ledger-write": ("ledger_write", "str"),
    **flag_kinds("run"),
}


@dataclass(frozen=True)
class RunRequest:
    """A ``greenflow [--ledger URL] run [options] -- CMD`` command line, parsed."""

    command: tuple[str, ...]
    ledger: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def get(self, name: str, default: Any = None) -> Any:
        """The value of option ``name`` (its keyword), or ``default``."""
        return self.options.get(name, default)

    @property
    def plans_or_reserves(self) -> bool:
        """Whether the run needs the ledger or a provider before it starts (the full command's path)."""
        replay = str(self.get("provider", "")).strip().lower() == "trace"  # a replay's clock drives the entry
        return bool(self.get("region") or self.get("budget") or self.get("decision_source") or replay)


def parse_run(args: Sequence[str]) -> RunRequest | None:
    """The ``run`` command line in ``args``, or ``None`` for anything to leave to Typer."""
    ledger: str | None = None
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] == "--ledger" and i + 1 < len(args):
            ledger, i = args[i + 1], i + 2
        elif args[i].startswith("--ledger="):
            ledger, i = args[i].partition("=")[2], i + 1
        else:
            return None
    if i >= len(args) or args[i] != "run":
        return None
    rest = list(args[i + 1 :])
    options: dict[str, Any] = {}
    command: list[str] = []
    j = 0
    while j < len(rest):
        token = rest[j]
        if token == "--":
            command = rest[j + 1 :]
            break
        if not token.startswith("-") or token == "-":
            command = rest[j:]  # options end at the command, as with Typer's allow_interspersed_args=False
            break
        name, has_inline, inline = token.partition("=") if token.startswith("--") else (token, "", "")
        if name not in _RUN_OPTIONS:
            return None
        key, kind = _RUN_OPTIONS[name]
        if kind in ("flag", "off"):
            if has_inline:
                return None
            options[key] = kind == "flag"
            j += 1
            continue
        if has_inline:
            text, j = inline, j + 1
        elif j + 1 < len(rest) and not rest[j + 1].startswith("--"):
            text, j = rest[j + 1], j + 2
        else:
            return None
        value = _convert(text, kind)
        if value is None:
            return None  # Typer words the error
        if kind == "list":
            options.setdefault(key, []).append(value)
        else:
            options[key] = value
    if not command:
        return None
    return RunRequest(tuple(command), ledger, options)


def _convert(text: str, kind: FlagKind) -> Any:
    if kind == "int":
        try:
            return int(text)  # its range is checked with the attempt's identity, as on the full path
        except ValueError:
            return None
    return text  # the options table parses carbon options, with the same message on both paths


def fast_run(request: RunRequest) -> int:
    """Run a command line with nothing to plan or reserve (see the module docstring); its exit code."""
    from greenflow.spec import CarbonSpec

    try:
        spec = CarbonSpec.declare(given_options(request.options, "run"), "run")
        mode = write_mode(request.get("ledger_write"), os.environ, os.getpid())
        who = attempt_from(
            os.environ,
            workflow=request.get("workflow"),
            run_id=request.get("run_id"),
            task=request.get("task"),
            attempt=request.get("attempt"),
        )
    except GreenflowError as error:
        return _fail(error)
    warm_up = LedgerWarmUp(request.ledger)
    requested = utcnow()

    from greenflow.spool import SpooledRun, in_progress, leave_trace, spool, spool_dir, start_writer

    directory = spool_dir(request.ledger)
    identity, spec_kwargs = who.identity_fields(), spec.to_kwargs()

    def trace(started: datetime) -> Path:
        # Before the command starts: if greenflow is killed, this file is what records the attempt.
        return leave_trace(in_progress(identity, spec_kwargs, requested, started), directory)

    try:
        ran = _metered(spec, who, list(request.command), warm_up, 0.0 if mode == "wait" else WARM_UP_AFTER_S, trace)
    except GreenflowError as error:  # the trace could not be written: the command did not start
        return _fail(error)
    path = spool(
        SpooledRun(
            identity=identity,
            spec=spec_kwargs,
            requested_at=requested,
            started=ran.started,
            measurement=ran.measurement.to_dict(),
            outcome=ran.outcome,
            error=ran.error,
        ),
        directory,
        path=ran.trace,
    )
    quiet = bool(request.get("quiet"))
    # Once the warm-up has begun, finishing it here costs less than a writer process starting from nothing.
    if mode == "wait" or warm_up.started():
        delivery = warm_up.deliver(path)
        if delivery.status == "failed":
            _say(
                f"greenflow: the ledger entry could not be written now ({delivery.reason}); the measurement is "
                f"kept in {path}: run `greenflow ledger flush` to write it"
            )
        elif delivery.status == "rejected":
            _say(
                f"greenflow: the ledger refused the entry ({delivery.reason}); the measurement was moved to "
                f"{delivery.moved_to} with the reason beside it"
            )
        elif not quiet and delivery.entry is not None:
            _summary(delivery.entry)
        if any(p != path for p in _pending(directory)):
            start_writer(directory, request.ledger)  # leftovers of earlier runs, off our critical path
    else:
        start_writer(directory, request.ledger, path)
        if not quiet:
            _say(
                f"greenflow: {ran.outcome or 'ran_now'} {who.workflow_id}/{who.task_id}#{who.attempt} "
                f"energy {format_energy(ran.measurement.total_kwh)}; ledger entry being written "
                "(`greenflow ledger flush` waits for it)"
            )
    if ran.start_error is not None:
        return _fail(ran.start_error)
    return ran.code


@dataclass(frozen=True)
class _Ran:
    measurement: Measurement
    started: datetime
    code: int
    outcome: Literal["failed", "interrupted"] | None
    error: str | None
    trace: Path
    start_error: InvalidInput | None = None


def _metered(
    spec: CarbonSpec,
    who: Attempt,
    command: list[str],
    warm_up: LedgerWarmUp,
    warm_after: float,
    leave_trace: Callable[[datetime], Path],
) -> _Ran:
    """Run ``command`` in its own process group under the meter, forwarding SIGINT/SIGTERM to it.

    ``leave_trace`` writes the attempt's in-progress spool file just before the command starts.
    """
    from greenflow.metering.meter import Meter

    # The forwarder opens before the meter: a signal that arrives before the command starts is not lost.
    with SignalForwarder() as signals:
        started = utcnow()
        trace = leave_trace(started)
        meter = Meter(sample_interval=spec.sample_interval)
        window = f"{who.task_id}#{who.attempt}"
        timer: threading.Timer | None = None
        meter.begin_window(window)
        try:
            try:
                child = signals.start(command)
            except OSError as error:
                failure = InvalidInput(f"cannot start {command[0]!r}: {error.strerror}", fix="check the command")
                measurement = meter.end_window(window)
                return _Ran(measurement, started, 2, "failed", f"InvalidInput: {failure}", trace, failure)
            timer = warm_up.start_after(warm_after)
            code = child.wait()
            measurement = meter.end_window(window)
        finally:
            if timer is not None:
                timer.cancel()
            meter.close()
    if signals.stopped_code is not None:
        stopped = signals.stopped_code
        return _Ran(measurement, started, stopped, "interrupted", f"CommandStopped: {stopped}", trace)
    if code != 0:
        failed = 128 - code if code < 0 else code
        return _Ran(measurement, started, failed, "failed", f"CommandFailed: command exited with code {failed}", trace)
    return _Ran(measurement, started, 0, None, None, trace)


class LedgerWarmUp:
    """Opens the ledger (importing SQLAlchemy) in a background thread while the command runs."""

    def __init__(self, url: str | None) -> None:
        self._url = url
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._ledger: Ledger | None = None
        self._error: BaseException | None = None

    def start(self) -> None:
        """Begin opening the ledger (once)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._open, name="greenflow-ledger-warm-up", daemon=True)
                self._thread.start()

    def start_after(self, seconds: float) -> threading.Timer | None:
        """:meth:`start` in ``seconds`` (at once for 0); cancel the timer if the command ends first."""
        if seconds <= 0:
            self.start()
            return None
        timer = threading.Timer(seconds, self.start)
        timer.daemon = True
        timer.start()
        return timer

    def started(self) -> bool:
        """Whether opening has begun (it may still be under way)."""
        with self._lock:
            return self._thread is not None

    def deliver(self, path: Path) -> Delivery:
        """Write the spooled run at ``path`` from this process (waiting for the ledger to open)."""
        from greenflow.spool import Delivery, deliver

        self.start()
        self._done.wait()
        if self._ledger is None:
            error = self._error
            return Delivery(path, "failed", reason=f"{type(error).__name__}: {error}" if error else "no ledger")
        return deliver(path, self._ledger)

    def _open(self) -> None:
        try:
            import greenflow.lifecycle  # noqa: F401 - imported here, off the main thread's critical path
            from greenflow.ledger import Ledger

            self._ledger = Ledger(self._url)
        except BaseException as error:  # reported by deliver(); the run stays spooled
            self._error = error
        finally:
            self._done.set()


def _pending(directory: Path) -> list[Path]:
    from greenflow.spool import pending

    return pending(directory)


def _summary(entry: Entry) -> None:
    from greenflow.units import format_mass

    _say(
        f"greenflow: {entry.decision} {entry.workflow_id}/{entry.task_id}#{entry.attempt} "
        f"energy {format_energy(entry.energy_kwh)}, emissions {format_mass(entry.operational_g)}, "
        f"entry {entry.entry_id}"
    )


def _fail(error: GreenflowError) -> int:
    _say(f"error: {error.one_line()}")
    return error.exit_code


def _say(line: str) -> None:
    sys.stderr.write(printable(line) + "\n")
    sys.stderr.flush()
