"""Running an interruptible attempt segment by segment: a Python callable, or a command that checkpoints.

An attempt whose spec says ``interruptible=True`` is planned in segments (:meth:`Lifecycle.plan`); these
functions drive it through them the way ``greenflow run`` does: wait until a segment starts (holding
nothing but this process; by default a sleep, or the caller's own ``wait`` that re-plans at forecast
refreshes), run the work until the segment's end, record the segment, wait for the next one.
Orchestrators that defer instead of waiting in-process drive the same steps themselves (see
:meth:`Lifecycle.metered_segment` and docs/interruptible.md)::

    lifecycle = Lifecycle(CarbonSpec.build(region="GB", interruptible=True, expected_duration="8h",
                                           deadline="24h"), identity)
    result = run_segments(lifecycle, train)      # train(segment) -> True when the work is done
    result = run_command(lifecycle, ["python", "train.py"], grace=timedelta(minutes=2))

**A callable** receives the :class:`~greenflow.lifecycle.SegmentRun` (``index``, ``stop_at`` in the
task's clock, ``stop_wall`` in real time; both ``None`` when it should run to completion) and returns
whether the work is done. It is expected to checkpoint and return by ``stop_wall``.

**A command** starts at each segment's start, in its own process group, with ``GREENFLOW_SEGMENT_INDEX``,
``GREENFLOW_SEGMENTS`` and ``GREENFLOW_STOP_AT`` (ISO time, empty when it runs to completion) in its
environment. At the segment's end it gets SIGTERM, and SIGKILL ``grace`` later if it is still running
(as a spot instance's preemption): it must save a checkpoint on SIGTERM and resume from it when started
again. Exit 0 before the segment's end means the work is done; another exit code before the end is a
failure (the attempt ends, ``failed``). A segment stopped by SIGTERM (whatever the command exits with
then) or SIGKILL is recorded ``interrupted`` and the next segment starts the command again. The last
planned segment has no stop: the command runs to completion (the deadline wins over carbon).

Every segment leaves one ledger entry linked to its attempt (``extra["segment"]``); the attempt's budget
reservation covers the whole job and each segment settles its own part of it.

If greenflow itself is stopped (KeyboardInterrupt, or SystemExit from a SIGTERM handler the caller
installs), a running command gets SIGTERM and ``grace`` to exit, the segment is recorded ``interrupted``
as the attempt's last entry, and the exception propagates; stopped while waiting between segments, the
rest of the reservation is released.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from greenflow.clock import utcnow
from greenflow.errors import InvalidInput
from greenflow.lifecycle import ActiveRun, ActiveSegment, Lifecycle, SegmentRun
from greenflow.parent_death import die_with_parent
from greenflow.steps import Run, Step, Wait

if TYPE_CHECKING:
    from greenflow.ledger.entry import Entry

__all__ = [
    "CommandFailed",
    "SegmentsResult",
    "run_command",
    "run_segment_command",
    "run_segments",
    "sleep_until",
    "wait_then_advance",
]

# How often a sleep wakes to check the wall clock (a suspended laptop's sleep does not count its suspension).
_SLEEP_CHUNK_S = 30.0

# The part of a segment a driver runs: given the segment and the notes its entry will carry, True when done.
_Body = Callable[[SegmentRun, dict[str, Any]], bool]


@dataclass(frozen=True)
class SegmentsResult:
    """How an interruptible attempt ended.

    ``entries`` are the ledger entries of the segments that ran, in order (one for an attempt planned in
    one piece; none when it was refused). ``done`` is whether the work finished. ``step`` is the last
    step: a ``Run`` when the work ran, a ``Skip`` (the budget refused it) or ``Fail`` (no forecast under
    ``on_provider_error="fail"``), with their entry already written. ``exit_code`` (commands only) is 0
    when done, the command's code when it failed (128 + the signal when a signal ended it), ``None``
    when it never ran.
    """

    entries: tuple[Entry, ...]
    done: bool
    step: Step
    exit_code: int | None = None


class CommandFailed(Exception):
    """The command exited with a non-zero code before its segment's end: the attempt failed."""

    def __init__(self, code: int) -> None:
        super().__init__(f"the command exited with code {code} before its segment's end")
        self.code = code


def sleep_until(moment: datetime) -> None:
    """Sleep until the wall clock reaches ``moment`` (in chunks, so a suspended host wakes on time)."""
    while (left := (moment - utcnow()).total_seconds()) > 0:
        time.sleep(min(left, _SLEEP_CHUNK_S))


def wait_then_advance(lifecycle: Lifecycle, step: Wait) -> Step:
    """The default wait: sleep until ``step.until``, then advance (an outage retry re-plans and may wait again)."""
    sleep_until(step.until)
    # Not waited=True: an outage retry re-plans here, and its new plan may have a window to wait for.
    return lifecycle.advance(step.decision)


def run_segments(
    lifecycle: Lifecycle,
    work: Callable[[SegmentRun], bool],
    *,
    step: Step | None = None,
    wait: Callable[[Wait], Step] | None = None,
) -> SegmentsResult:
    """Drive ``lifecycle``'s attempt to its end, calling ``work(segment)`` in each segment.

    ``work`` returns ``True`` when the work is done; it is told when to stop (``segment.stop_wall``) and
    should checkpoint and return by then (``False``: the next segment resumes it). If it raises, the
    segment is recorded as the attempt's final entry (``failed``) and the exception propagates. ``step``
    continues from a step already taken (default: ``lifecycle.advance()``). ``wait`` takes each
    :class:`~greenflow.steps.Wait` and returns the step after it (default :func:`wait_then_advance`; an
    entry point passes its own, e.g. one that re-plans with ``lifecycle.refresh`` while it waits). An
    attempt planned in one piece (not interruptible, or no forecast) runs once, to completion, and leaves
    one entry.
    """
    driver = _Driver(lifecycle, lambda segment, _notes: bool(work(segment)), wait)
    return driver.drive(step)


def run_command(
    lifecycle: Lifecycle,
    command: Sequence[str],
    *,
    grace: timedelta | None = None,
    env: Mapping[str, str] | None = None,
    step: Step | None = None,
    wait: Callable[[Wait], Step] | None = None,
) -> SegmentsResult:
    """Drive the attempt running ``command`` in each segment (see the module doc for the protocol).

    ``grace`` is the time between SIGTERM and SIGKILL (default: the spec's ``grace``, in real time even
    in a replay); ``env`` is the command's environment (default: this process's), to which the segment's
    variables are added. A command that fails is in the result (``exit_code``, a ``failed`` last entry);
    one that cannot start raises :class:`~greenflow.errors.InvalidInput` (recorded ``failed`` too).
    ``step`` and ``wait`` as for :func:`run_segments`.
    """
    if not command:
        raise InvalidInput("no command to run", fix="give the command and its arguments, e.g. ['python', 'train.py']")
    given_grace = lifecycle.spec.grace if grace is None else grace
    base = dict(os.environ if env is None else env)

    def body(segment: SegmentRun, notes: dict[str, Any]) -> bool:
        return run_segment_command(command, segment, grace=given_grace, env=base, notes=notes)

    driver = _Driver(lifecycle, body, wait)
    try:
        result = driver.drive(step)
    except CommandFailed as failed:
        assert driver.step is not None  # a command ran: a Run step was taken
        return SegmentsResult(tuple(driver.entries), False, driver.step, failed.code)
    return SegmentsResult(result.entries, result.done, result.step, 0 if result.done else None)


def run_segment_command(
    command: Sequence[str],
    segment: SegmentRun,
    *,
    grace: timedelta,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    notes: dict[str, Any] | None = None,
) -> bool:
    """Run ``command`` for ONE segment (see the module doc): True when it finished its work.

    It starts in its own process group with the segment's variables added to ``env`` (default: this
    process's environment) and runs in ``cwd``; at ``segment.stop_wall`` it gets SIGTERM, and SIGKILL
    ``grace`` later (``False``: paused, the next segment resumes it). Exit 0 before then is ``True``;
    another code raises :class:`CommandFailed`. ``notes`` (the segment entry's, e.g.
    ``ActiveSegment.notes``) receive how it ended (``stopped``, ``exit_code``). For an orchestrator that
    drives the segments itself, one segment per task execution, inside :meth:`Lifecycle.metered_segment`.
    """
    if not command:
        raise InvalidInput("no command to run", fix="give the command and its arguments, e.g. ['python', 'train.py']")
    variables = {
        "GREENFLOW_SEGMENT_INDEX": str(segment.index),
        "GREENFLOW_SEGMENTS": str(segment.of),
        "GREENFLOW_STOP_AT": "" if segment.stop_at is None else segment.stop_at.isoformat(),
    }
    base = dict(os.environ if env is None else env)
    try:
        child = subprocess.Popen(
            list(command),
            env={**base, **variables},
            cwd=cwd,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )
    except OSError as error:
        raise InvalidInput(f"cannot start {command[0]!r}: {error.strerror}", fix="check the command") from None
    return _supervise(child, segment, grace.total_seconds(), notes if notes is not None else {})


class _Driver:
    """Walks an attempt's steps: sleeps through waits, runs each segment's body under the meter."""

    def __init__(self, lifecycle: Lifecycle, body: _Body, wait: Callable[[Wait], Step] | None) -> None:
        self.lifecycle = lifecycle
        self.body = body
        self.wait = wait if wait is not None else functools.partial(wait_then_advance, lifecycle)
        self.entries: list[Entry] = []
        self.step: Step | None = None

    def drive(self, step: Step | None) -> SegmentsResult:
        lifecycle = self.lifecycle
        self.step = step = step if step is not None else lifecycle.advance()
        while True:
            if isinstance(step, Wait):
                self.step = step = self._wait(step)
                continue
            if not isinstance(step, Run):
                return SegmentsResult(tuple(self.entries), False, step)
            segment = lifecycle.segment(step.decision)
            if segment is None:
                return self._whole(step)
            active: ActiveSegment | None = None
            try:
                with lifecycle.metered_segment(step.decision) as active:
                    active.done = self.body(segment, active.notes)
            finally:
                if active is not None and active.entry is not None:  # a failed segment's too, before it propagates
                    self.entries.append(active.entry)
            if active.next is None:
                return SegmentsResult(tuple(self.entries), True, step)
            self.step = step = lifecycle.advance(active.next)

    def _whole(self, step: Run) -> SegmentsResult:
        """An attempt planned in one piece: one run to completion, one entry."""
        whole = SegmentRun(0, 1, step.decision.start_at, None, None, None)
        active: ActiveRun | None = None
        try:
            with self.lifecycle.metered(step.decision) as active:
                done = self.body(whole, {})
        finally:
            if active is not None and active.entry is not None:
                self.entries.append(active.entry)
        return SegmentsResult(tuple(self.entries), done, step)

    def _wait(self, step: Wait) -> Step:
        try:
            return self.wait(step)
        except BaseException:
            # Stopped between segments (or before the first): nothing runs any more, so nothing more is held.
            if step.decision.reservation_id is not None:
                self.lifecycle.ledger.budgets.release(step.decision.reservation_id)
            raise


def _supervise(child: subprocess.Popen[bytes], segment: SegmentRun, grace_s: float, notes: dict[str, Any]) -> bool:
    """Wait for the command until the segment's end; stop it there. True when it finished its work."""
    timeout = None if segment.stop_wall is None else max((segment.stop_wall - utcnow()).total_seconds(), 0.0)
    try:
        code = child.wait(timeout)
    except subprocess.TimeoutExpired:
        notes.update(_stop(child, grace_s, "the segment's planned end"))
        return False
    except BaseException:
        # greenflow itself is being stopped: the command gets its SIGTERM and grace too, then it is recorded.
        notes.update(_stop(child, grace_s, "greenflow was stopped"))
        raise
    notes["exit_code"] = _exit_code(code)
    if code == 0:
        return True
    raise CommandFailed(_exit_code(code))


def _stop(child: subprocess.Popen[bytes], grace_s: float, why: str) -> dict[str, Any]:
    """SIGTERM the command's process group, SIGKILL it ``grace_s`` later if it still runs; what happened."""
    _signal_group(child, signal.SIGTERM)
    try:
        code = child.wait(grace_s)
        stopped = f"SIGTERM at {why}"
    except subprocess.TimeoutExpired:
        _signal_group(child, signal.SIGKILL)
        code = child.wait()
        stopped = f"SIGKILL: still running {grace_s:g} s after SIGTERM at {why} (work since its last checkpoint lost)"
    return {"stopped": stopped, "exit_code": _exit_code(code)}


def _signal_group(child: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may have just exited
        os.killpg(child.pid, signum)


def _exit_code(code: int) -> int:
    """The code a shell reports: 128 + the signal for a command a signal ended."""
    return 128 - code if code < 0 else code
