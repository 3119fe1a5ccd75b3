"""``greenflow run -- CMD``: meter any command (a BashOperator's, a container's, a Slurm job's) into the ledger.

The command runs as a child process in its own process group; SIGINT and SIGTERM sent to greenflow are
forwarded to that group, and a command stopped that way is recorded as ``interrupted`` with the energy
used so far. The child's exit code is passed through (128 + signal number when it was killed). With
``--budget`` the estimate is reserved as soon as the start is planned, before any wait: if it does not
fit, greenflow exits 3 at once and the command is not started. With ``--max-delay``/``--deadline``
greenflow then waits for the green window, re-planning at the provider's forecast refresh as the Airflow
trigger does. The steps are :meth:`Lifecycle.advance`'s (``Wait`` → sleep, ``Run`` → the metered command,
``Skip`` → exit 3, ``Fail`` → the error's exit code); the flags and their defaults are the options table's.

Command lines with nothing to plan or reserve never reach this module: :mod:`greenflow.cli.fast_run`
runs them without importing Typer or the ledger first (see there for when their entry is written).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from greenflow.cli.attempt import attempt_from
from greenflow.cli.context import open_ledger, state
from greenflow.cli.flags import given_options, with_option_flags
from greenflow.cli.forwarding import SignalForwarder
from greenflow.cli.output import handle_errors, say
from greenflow.cli.write_mode import WRITE_MODE_ENV, write_mode
from greenflow.clock import utcnow
from greenflow.errors import InvalidInput
from greenflow.exit_codes import BUDGET_REFUSED
from greenflow.ledger import Identity
from greenflow.lifecycle import Decision, Lifecycle
from greenflow.replanning import refresh_period
from greenflow.spec import CarbonSpec
from greenflow.steps import Fail, Run, Skip, Step, Wait
from greenflow.units import format_energy, format_mass

EXIT_BUDGET_REFUSED = BUDGET_REFUSED
# A waiting `greenflow run` sleeps in chunks of at most this long (a changed wall clock is noticed).
_SLEEP_CHUNK_S = 60.0
# Re-plan cadence when the provider has none (a replayed trace), in the task's clock.


class CommandFailed(Exception):
    """The command exited non-zero (recorded as ``failed``; its code is passed through)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"command exited with code {code}")
        self.code = code


class CommandStopped(SystemExit):
    """greenflow was asked to stop and forwarded the signal (recorded as ``interrupted``)."""


@dataclass(frozen=True)
class _Who:
    identity: Identity
    source: str


def identity_from(
    env: Mapping[str, str], *, workflow: str | None, run_id: str | None, task: str | None, attempt: int | None
) -> _Who:
    """Who this attempt is: flags first, then the Airflow or Prefect context the command runs in."""
    who = attempt_from(env, workflow=workflow, run_id=run_id, task=task, attempt=attempt)
    return _Who(Identity(**who.identity_fields()), who.source)


def _read_decision(source: str) -> Decision:
    """An orchestrator's plan (``Decision.to_dict()`` JSON) from a file, ``-`` (stdin) or ``env:NAME``."""
    try:
        if source.startswith("env:"):
            text = os.environ[source.removeprefix("env:")]
        else:
            text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
        return Decision.from_dict(json.loads(text))
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise InvalidInput(
            f"--decision {source!r} is not a greenflow decision ({error})",
            fix="pass the JSON of Decision.to_dict(), as the Airflow operator writes it",
        ) from None


@handle_errors
@with_option_flags("run")
def run(
    command: list[str] = typer.Argument(..., help="The command and its arguments, after `--`."),
    workflow: str | None = typer.Option(
        None, "--workflow", help="Workflow id (default: Airflow DAG id, else 'adhoc')."
    ),
    run_id: str | None = typer.Option(None, "--run-id", help="Run id (default: Airflow/Prefect run, else generated)."),
    task: str | None = typer.Option(None, "--task", help="Task id (default: Airflow task id, else 'command')."),
    attempt: int | None = typer.Option(None, "--attempt", help="Attempt number (default: Airflow try)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No summary line."),
    decision_source: str | None = typer.Option(
        None, "--decision", help="An orchestrator's plan (Decision JSON: a file, - or env:VAR): no planning, no wait."
    ),
    ledger_write: str | None = typer.Option(
        None,
        "--ledger-write",
        help="auto, background or wait: when a run with nothing to plan or reserve writes its entry "
        f"(default ${WRITE_MODE_ENV}, else auto). Runs that plan or reserve always write before exiting.",
    ),
    **options: Any,
) -> None:
    """Run CMD under the meter and write one ledger entry for it.

    The carbon flags are the options table's (greenflow.options), with its defaults for `greenflow run`.
    """
    if not command:
        raise InvalidInput("no command given", fix="write it after --, e.g. greenflow run -- python train.py")
    # This path opened the ledger before the start anyway, so it always writes before exiting.
    write_mode(ledger_write, os.environ, os.getpid())
    who = identity_from(os.environ, workflow=workflow, run_id=run_id, task=task, attempt=attempt)
    spec = CarbonSpec.declare(given_options(options, "run"), "run")
    lifecycle = Lifecycle(spec, who.identity, ledger=open_ledger())
    if spec.interruptible and decision_source is None:
        raise typer.Exit(_run_interruptible(lifecycle, command, quiet=quiet))
    if decision_source is None:
        # Plan and reserve before waiting, as the operators do: an attempt its budget cannot cover is
        # refused at once, not after holding a process for hours; one that fits keeps its share meanwhile.
        step = lifecycle.advance()
    else:
        # An orchestrator's plan (e.g. an Airflow trigger's) was planned, reserved and waited for: keep its
        # provenance. Its request times come along, so the entry is "deferred" exactly when its wait was.
        step = lifecycle.advance(_read_decision(decision_source), waited=True)
    if isinstance(step, Wait):
        step = _wait_reserved(lifecycle, step, quiet=quiet)
    elif isinstance(step, Run) and decision_source is None and step.decision.deferred and not quiet:
        _say_waiting(step.decision)  # a replay at full speed: its wait takes no wall time, but it is one
    if isinstance(step, Skip):
        say(f"greenflow: not started: {step.refusal.one_line()}", error=True)
        raise typer.Exit(EXIT_BUDGET_REFUSED)
    if isinstance(step, Fail):
        raise step.error  # its `failed` entry is written; handle_errors prints it and exits with its code
    code = _run_metered(lifecycle, step.decision, command)
    entry = lifecycle.ledger.for_attempt(who.identity)
    if entry is not None and not quiet:
        say(
            f"greenflow: {entry.decision} {entry.workflow_id}/{entry.task_id}#{entry.attempt} "
            f"energy {format_energy(entry.energy_kwh)}, emissions {format_mass(entry.operational_g)}, "
            f"entry {entry.entry_id}",
            error=True,
        )
    raise typer.Exit(code)


def _run_interruptible(lifecycle: Lifecycle, command: list[str], *, quiet: bool) -> int:
    """``--interruptible``: the command runs in the planned green segments (docs/interruptible.md).

    Each segment starts the command, sends SIGTERM at the segment's end and SIGKILL ``--grace`` later; the
    command resumes from its own checkpoint at the next segment, and exit 0 means the work is done. Between
    segments greenflow sleeps as it waits for any start (re-planning the rest at forecast refreshes). One
    entry per segment. A SIGTERM to greenflow itself stops the segment that runs (recorded ``interrupted``).
    """
    from greenflow.segment_runner import run_command

    previous = signal.signal(signal.SIGTERM, _stop_waiting)
    try:
        result = run_command(lifecycle, command, wait=lambda waiting: _wait(lifecycle, waiting, quiet=quiet))
    finally:
        signal.signal(signal.SIGTERM, previous)
    if isinstance(result.step, Skip):
        say(f"greenflow: not started: {result.step.refusal.one_line()}", error=True)
        return EXIT_BUDGET_REFUSED
    if isinstance(result.step, Fail):
        raise result.step.error
    if not quiet:
        grams = sum(e.operational_g or 0.0 for e in result.entries)
        kwh = [e.energy_kwh for e in result.entries if e.energy_kwh is not None]
        say(
            f"greenflow: {'done' if result.done else 'not done'} in {len(result.entries)} segment(s), "
            f"energy {format_energy(sum(kwh) if kwh else None)}, emissions {format_mass(grams)}, "
            f"entries {', '.join(e.entry_id for e in result.entries)}",
            error=True,
        )
    return 0 if result.exit_code is None else result.exit_code


def _wait_reserved(lifecycle: Lifecycle, step: Wait, *, quiet: bool) -> Step:
    """:func:`_wait`, giving the reservation back if the wait is stopped (Ctrl-C, SIGTERM).

    Nothing ran, so nothing is charged and no entry is written; only a ``kill -9`` leaves the
    reservation to expire on its own.
    """
    previous = signal.signal(signal.SIGTERM, _stop_waiting)
    try:
        return _wait(lifecycle, step, quiet=quiet)
    except BaseException:
        if step.decision.reservation_id is not None:
            lifecycle.ledger.budgets.release(step.decision.reservation_id)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_waiting(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _say_waiting(decision: Decision) -> None:
    say(
        f"greenflow: waiting until {decision.start_at.isoformat()} "
        f"(latest start {decision.latest_start.isoformat()}): {decision.reason}",
        error=True,
    )


def _wait(lifecycle: Lifecycle, step: Step, *, quiet: bool) -> Step:
    """Sleep through the attempt's waits (a CLI may hold its own process; orchestrators defer instead).

    A planned window is re-planned at each forecast refresh (:meth:`Lifecycle.refresh`: never later,
    sooner only when greener); a provider-outage retry asks again at the policy's retry time. The
    request time carries over, so a command that waited is recorded ``deferred``, one that did not ``ran_now``.
    """
    said: Decision | None = None
    every = refresh_period(lifecycle)
    while isinstance(step, Wait):
        decision = step.decision
        if not quiet and (said is None or said.start_at != decision.start_at or said.action != decision.action):
            _say_waiting(decision)
        said = decision
        wake = step.until if step.for_forecast else min(step.until, utcnow() + every)
        while (remaining := (wake - utcnow()).total_seconds()) > 0:
            time.sleep(min(remaining, _SLEEP_CHUNK_S))
        if not step.for_forecast and utcnow() < step.until:
            decision = lifecycle.refresh(decision)
            step = Wait(decision, decision.wake_at)
            continue
        step = lifecycle.advance(decision)
    return step


def _run_metered(lifecycle: Lifecycle, decision: Decision, command: list[str]) -> int:
    trace = _leave_trace(lifecycle, decision)
    try:
        with SignalForwarder() as signals, lifecycle.metered(decision):
            try:
                child = signals.start(command)
            except OSError as error:
                raise InvalidInput(f"cannot start {command[0]!r}: {error.strerror}", fix="check the command") from None
            code = child.wait()
            if signals.stopped_code is not None:
                raise CommandStopped(signals.stopped_code)
            if code != 0:
                raise CommandFailed(128 - code if code < 0 else code)
    except CommandStopped as stopped:
        trace.unlink(missing_ok=True)
        return int(stopped.code or 1)
    except CommandFailed as failed:
        trace.unlink(missing_ok=True)
        return failed.code
    except InvalidInput:
        trace.unlink(missing_ok=True)  # recorded as failed: the command could not start
        raise
    # Only once the entry is in the ledger: a greenflow killed before this leaves the trace, which
    # `greenflow ledger flush` records as interrupted (idempotent if the entry made it after all).
    trace.unlink(missing_ok=True)
    return 0


def _leave_trace(lifecycle: Lifecycle, decision: Decision) -> Path:
    """The attempt's in-progress spool file, with its decision and reservation, before the command starts."""
    from greenflow import spool

    run = spool.in_progress(
        dataclasses.asdict(lifecycle.identity),
        lifecycle.spec.to_kwargs(),
        decision.attempt_requested_at,
        lifecycle.now(),
        decision=decision.to_dict(),
    )
    return spool.leave_trace(run, spool.spool_dir(state.ledger_url))
