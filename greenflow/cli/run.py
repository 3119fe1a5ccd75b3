"""``greenflow run -- CMD``: meter any command (a BashOperator's, a container's, a Slurm job's) into the ledger.

The command runs as a child process in its own process group; SIGINT and SIGTERM sent to greenflow are
forwarded to that group, and a command stopped that way is recorded as ``interrupted`` with the energy
used so far. The child's exit code is passed through (128 + signal number when it was killed). With
``--budget`` the estimate is reserved as soon as the start is planned, before any wait: if it does not
fit, greenflow exits 3 at once and the command is not started. With ``--max-delay``/``--deadline``
greenflow then waits for the green window.

Command lines with nothing to plan or reserve never reach this module: :mod:`greenflow.cli.launcher`
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

import typer

from greenflow.cli.attempt import attempt_from, provider_options
from greenflow.cli.context import open_ledger, state
from greenflow.cli.forwarding import SignalForwarder
from greenflow.cli.output import handle_errors, say
from greenflow.cli.write_mode import WRITE_MODE_ENV, write_mode
from greenflow.clock import utcnow
from greenflow.errors import BudgetExceeded, InvalidInput
from greenflow.exit_codes import BUDGET_REFUSED
from greenflow.ledger import Identity
from greenflow.lifecycle import Decision, Lifecycle
from greenflow.spec import CarbonSpec
from greenflow.units import format_energy, format_mass

EXIT_BUDGET_REFUSED = BUDGET_REFUSED
# How often a waiting `greenflow run` says what it is waiting for.
_PROGRESS_EVERY_S = 60.0


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
def run(
    command: list[str] = typer.Argument(..., help="The command and its arguments, after `--`."),
    workflow: str | None = typer.Option(
        None, "--workflow", help="Workflow id (default: Airflow DAG id, else 'adhoc')."
    ),
    run_id: str | None = typer.Option(None, "--run-id", help="Run id (default: Airflow/Prefect run, else generated)."),
    task: str | None = typer.Option(None, "--task", help="Task id (default: Airflow task id, else 'command')."),
    attempt: int | None = typer.Option(None, "--attempt", help="Attempt number (default: Airflow try)."),
    region: list[str] = typer.Option([], "--region", help="Grid region; repeat to let greenflow choose."),
    provider: str = typer.Option("ukgrid", "--provider", help="Intensity provider."),
    provider_option: list[str] = typer.Option([], "--provider-option", help="KEY=VALUE for the provider."),
    budget: str | None = typer.Option(None, "--budget", help="Budget to reserve against."),
    estimate: str | None = typer.Option(None, "--estimate", help="Estimate to reserve, e.g. 20g or 0.5kWh."),
    expected_duration: str = typer.Option("1h", "--expected-duration", help="How long the command runs."),
    max_delay: str = typer.Option("0s", "--max-delay", help="Wait up to this long for a greener start."),
    deadline: str | None = typer.Option(None, "--deadline", help="Latest finish (time or duration)."),
    min_savings: float = typer.Option(0.0, "--min-savings", help="Minimum saving (percent) worth waiting for."),
    on_provider_error: str = typer.Option("run", "--on-provider-error", help="run, wait or fail."),
    forecast_correction: bool = typer.Option(
        False,
        "--forecast-correction",
        help="Correct the forecast with its recent errors before planning (bias by slot of day + the latest "
        "error carried forward); the entry records whether it was applied and why.",
    ),
    pue: float | None = typer.Option(None, "--pue", help="Data-centre PUE (>= 1)."),
    tag: list[str] = typer.Option([], "--tag", help="Tag the entry (budgets can be scoped to a tag)."),
    team: str | None = typer.Option(None, "--team", help="Team label."),
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
) -> None:
    """Run CMD under the meter and write one ledger entry for it."""
    if not command:
        raise InvalidInput("no command given", fix="write it after --, e.g. greenflow run -- python train.py")
    # This path opened the ledger before the start anyway, so it always writes before exiting.
    write_mode(ledger_write, os.environ, os.getpid())
    who = identity_from(os.environ, workflow=workflow, run_id=run_id, task=task, attempt=attempt)
    spec = CarbonSpec.build(
        region=region[0] if region else None,
        regions=region[1:],
        provider=provider,
        provider_options=provider_options(provider_option),
        expected_duration=expected_duration,
        deadline=deadline,
        max_delay=None if deadline else max_delay,
        min_savings=min_savings,
        budget=budget,
        estimate=estimate,
        on_provider_error=on_provider_error,
        forecast_correction=forecast_correction,
        pue=pue,
        tags=tag,
        team=team,
    )
    lifecycle = Lifecycle(spec, who.identity, ledger=open_ledger())
    # An orchestrator's plan (e.g. an Airflow trigger's) was planned, reserved and waited for: keep its
    # provenance. Its request times come along, so the entry is "deferred" exactly when its wait was.
    decision = lifecycle.plan() if decision_source is None else _read_decision(decision_source)
    # Reserve before waiting, as the operators do: an attempt its budget cannot cover is refused at once,
    # not after holding a process for hours; one that fits keeps its share through the wait.
    try:
        decision = lifecycle.reserve(decision)
    except BudgetExceeded as refused:
        lifecycle.skip(decision, refused)
        say(f"greenflow: not started: {refused.one_line()}", error=True)
        raise typer.Exit(EXIT_BUDGET_REFUSED) from None
    if decision_source is None:
        decision = _wait_reserved(lifecycle, decision, quiet=quiet)
    code = _run_metered(lifecycle, decision, command)
    entry = lifecycle.ledger.for_attempt(who.identity)
    if entry is not None and not quiet:
        say(
            f"greenflow: {entry.decision} {entry.workflow_id}/{entry.task_id}#{entry.attempt} "
            f"energy {format_energy(entry.energy_kwh)}, emissions {format_mass(entry.operational_g)}, "
            f"entry {entry.entry_id}",
            error=True,
        )
    raise typer.Exit(code)


def _wait_reserved(lifecycle: Lifecycle, decision: Decision, *, quiet: bool) -> Decision:
    """:func:`_wait_for_window`, giving the reservation back if the wait is stopped (Ctrl-C, SIGTERM).

    Nothing ran, so nothing is charged and no entry is written (as before the reservation moved ahead
    of the wait); only a ``kill -9`` leaves the reservation to expire on its own.
    """
    previous = signal.signal(signal.SIGTERM, _stop_waiting)
    try:
        return _wait_for_window(lifecycle, decision, quiet=quiet)
    except BaseException:
        if decision.reservation_id is not None:
            lifecycle.ledger.budgets.release(decision.reservation_id)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop_waiting(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _wait_for_window(lifecycle: Lifecycle, decision: Decision, *, quiet: bool) -> Decision:
    """Sleep until the planned start (a CLI may hold its own process; orchestrators defer instead).

    A provider-outage retry re-plans the same attempt (``plan(previous=...)``, not ``retry=True``): the
    request time carries over, so a command that waited is recorded ``deferred``, one that did not ``ran_now``.
    """
    while decision.action in ("defer", "retry"):
        if not quiet:
            say(
                f"greenflow: waiting until {decision.start_at.isoformat()} "
                f"(latest start {decision.latest_start.isoformat()}): {decision.reason}",
                error=True,
            )
        while (remaining := (decision.wake_at - utcnow()).total_seconds()) > 0:
            time.sleep(min(remaining, _PROGRESS_EVERY_S))
        if decision.action == "defer":
            break
        decision = lifecycle.plan(previous=decision)
    return decision


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
