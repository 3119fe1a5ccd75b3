"""Concise progress lines from the parts' log files: what each task decided, what it waits for and until when.

Airflow and Prefect print hundreds of lines per run; the demo keeps them in files and shows only the
``greenflow`` lines (shortened) and each part's own events. Log formats are the orchestrators' (Airflow's
structlog console lines, Prefect's ``time | LEVEL | Task run 'name' - message``); a line this module does
not understand is simply not shown, so a changed log format costs progress detail, never the demo.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from greenflow.demo import events

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_AIRFLOW_LINE = re.compile(r"^\S+\s+\[\s*(?P<level>\w+)\s*\]\s+(?P<msg>.*)$")
# Airflow's structlog lines end with the logger name and key=value pairs: " [airflow.task...] loc=x.py:1".
_AIRFLOW_TAIL = re.compile(r"\s+\[[\w.]+\](?:\s+[\w.]+=\S*)*\s*$")
_AIRFLOW_TASK = re.compile(r"\[DAG TEST\] running task <TaskInstance: [\w.-]+?\.(?P<task>[\w-]+) ")
_PREFECT_LINE = re.compile(
    r"^[\d:.]+ \| (?P<level>\w+)\s*\| (?P<kind>Task run|Flow run) '(?P<name>[^']+)' - (?P<msg>.*)$"
)
_REPLAY_NOTE = re.compile(r"\s*\[replayed trace at [^\]]*\]")
_PERIOD_END = re.compile(r"[;,] period ends [^)]*")

_PLAN_AIRFLOW = re.compile(
    r"^greenflow plan(?: \(retried\)| after the wait)?: (?P<action>\w+): start (?P<start>\S+) in (?P<region>\S+) "
    r"\(latest \S+\): (?P<reason>.*)$"
)
_PLAN_NUMBERS = re.compile(
    r"\((?P<at>[\d.]+) gCO2e/kWh vs (?P<now>[\d.]+) starting now in \S+, (?P<pct>[\d.]+) % lower\)"
)
_PLAN_PREFECT = re.compile(
    r"^greenflow: plan (?:again )?for \S+(?: \(attempt \d+\))?: (?P<what>.*?)(?:; latest start.*)?$"
)
_PREFECT_TRACE_START = re.compile(r"deferred to (?P<at>\d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d)?Z)")
_RESERVED = re.compile(r"^greenflow: reserved (?P<amount>.+?) against budget (?P<budget>\S+)")
_DEFERRING = re.compile(r"^greenflow: deferring until (?P<wall>\S+) \(wall clock\)")
_WAITING = re.compile(r"^greenflow: waiting in this process until (?P<wall>\S+ \S+?Z),")
_FIRED = re.compile(r"^greenflow: window trigger fired")
_ENTRY = re.compile(r"^greenflow: ledger entry \S+ \((?P<decision>\w+)\)(?P<rest>.*)$")
_FINISHED = re.compile(r"^Finished in state (?P<state>\w+)")
# ``greenflow run --interruptible`` (stderr) and flows/checkpointed_training.py (stdout), in one log.
_RUN_PLAN = re.compile(r"^greenflow: waiting until \S+ \(latest start [^)]*\): (?P<plan>.*?)(?:; finishing by .*)?$")
_RUN_DONE = re.compile(r"^greenflow: (?P<what>done in \d+ segment\(s\).*?)(?:, entries .*)?$")
_ISO = re.compile(r"\d{4}-(?P<md>\d\d-\d\d)T(?P<hm>\d\d:\d\d)(?::[\d.]+)?(?:Z|\+00:00)")
_TRAINING = (
    (re.compile(r"^start$"), "first segment: the training starts from step 0"),
    (re.compile(r"^paused at (?P<step>\d+)$"), "segment's end: SIGTERM, checkpoint saved at step {step}, paused"),
    (re.compile(r"^resumed from step (?P<step>\d+)$"), "next segment: resumed from its checkpoint at step {step}"),
    (re.compile(r"^done$"), "training done"),
)


@dataclass(frozen=True)
class Progress:
    """One thing worth telling the user about a part."""

    part: str
    task: str | None
    text: str
    wait_trace: datetime | None = None  # the trace time the task waits for (a replay's clock)
    wait_wall: datetime | None = None  # the real time it resumes at
    event: dict[str, Any] | None = None  # the part's own event, if this line was one


@dataclass
class LogFollower:
    """Reads the lines appended to a part's log file since the last call."""

    path: Path
    _offset: int = 0
    _partial: str = ""

    def new_lines(self) -> list[str]:
        """Complete lines written since the last call (a line still being written waits for the next)."""
        if not self.path.exists():
            return []
        with self.path.open("rb") as stream:
            stream.seek(self._offset)
            chunk = stream.read()
        self._offset += len(chunk)
        text = self._partial + chunk.decode("utf-8", errors="replace")
        *lines, self._partial = text.split("\n")
        return lines


@dataclass
class LogParser:
    """Turns one part's log lines into :class:`Progress` (stateful: Airflow names the task on its own line)."""

    part: str
    _task: str | None = None
    _seen: set[str] = field(default_factory=set)
    _trace_start: dict[str, datetime] = field(default_factory=dict)
    _started: bool = False  # the interruptible job's command has run (a segment began)

    def feed(self, line: str) -> Progress | None:
        """The progress ``line`` reports, if any."""
        line = _ANSI.sub("", line).rstrip()
        event = events.parse(line)
        if event is not None:
            return Progress(self.part, None, "", event=event)
        if self.part == "airflow":
            return self._airflow(line)
        if self.part == "finetune":
            return self._finetune(line)
        return self._prefect(line)

    def _finetune(self, line: str) -> Progress | None:
        if plan := _RUN_PLAN.match(line):
            # greenflow prints its plan when it first waits: before the first segment, or between two.
            when = "paused until its next green segment" if self._started else "waits for its first green segment"
            return Progress(self.part, "finetune", f"{when}; plan: {_clip(_ISO.sub(_short_trace, plan['plan']), 220)}")
        if done := _RUN_DONE.match(line):
            return Progress(self.part, "finetune", f"{done['what']} (the demo's GPU energy is SIMULATED)")
        for pattern, text in _TRAINING:
            if found := pattern.match(line):
                self._started = True
                return Progress(self.part, "finetune", text.format(**found.groupdict()))
        return None

    def _airflow(self, line: str) -> Progress | None:
        match = _AIRFLOW_LINE.match(line)
        if match is None:
            return None
        message = _AIRFLOW_TAIL.sub("", match["msg"])
        started = _AIRFLOW_TASK.search(message)
        if started:
            self._task = started["task"]
            again = self._task in self._seen
            self._seen.add(self._task)
            return Progress(self.part, self._task, "resumes on a worker" if again else "starts")
        if match["level"].lower() in ("error", "critical"):
            return Progress(self.part, self._task, f"error: {_clip(message)}")
        return self._greenflow(message, self._task)

    def _prefect(self, line: str) -> Progress | None:
        match = _PREFECT_LINE.match(line)
        if match is None:
            return None
        task = "flow" if match["kind"] == "Flow run" else re.sub(r"-[0-9a-f]{3}$", "", match["name"])
        message = match["msg"]
        finished = _FINISHED.match(message)
        if finished:
            return Progress(self.part, task, f"finished: {_clip(message[len('Finished in state ') :], 110)}")
        if match["level"] in ("ERROR", "CRITICAL"):
            return Progress(self.part, task, f"error: {_clip(message)}")
        return self._greenflow(message, task)

    def _greenflow(self, message: str, task: str | None) -> Progress | None:
        if not message.startswith("greenflow"):
            return None
        message = _REPLAY_NOTE.sub("", message)
        key = task or "?"
        if plan := _PLAN_AIRFLOW.match(message):
            start = _parse_time(plan["start"])
            if start is not None:
                self._trace_start[key] = start
            numbers = _PLAN_NUMBERS.search(plan["reason"])
            figures = (
                f" ({float(numbers['at']):.0f} gCO2e/kWh vs {float(numbers['now']):.0f} now, "
                f"{float(numbers['pct']):.0f}% lower)"
                if numbers
                else ""
            )
            when = f"defer to {_trace(start)}" if plan["action"] == "defer" else plan["action"].replace("_", " ")
            return Progress(self.part, task, f"plan: {when} in {plan['region']}{figures}")
        if plan := _PLAN_PREFECT.match(message):
            start_text = _PREFECT_TRACE_START.search(plan["what"])
            start = _parse_time(start_text["at"]) if start_text else None
            if start is not None:
                self._trace_start[key] = start
            return Progress(self.part, task, f"plan: {plan['what']}")
        if reserved := _RESERVED.match(message):
            return Progress(self.part, task, f"reserved {reserved['amount']} of budget {reserved['budget']}")
        if deferring := _DEFERRING.match(message):
            wall = _parse_time(deferring["wall"])
            return Progress(
                self.part,
                task,
                "deferred: Airflow's trigger waits for the green window (no worker slot held)",
                wait_trace=self._trace_start.get(key),
                wait_wall=wall,
            )
        if waiting := _WAITING.match(message):
            wall = _parse_time(waiting["wall"].replace(" ", "T"))
            return Progress(
                self.part,
                task,
                "waits in the flow's process for the green window",
                wait_trace=self._trace_start.get(key),
                wait_wall=wall,
            )
        if _FIRED.match(message):
            return Progress(self.part, task, "green window reached: the trigger fired")
        if entry := _ENTRY.match(message):
            rest = entry["rest"].split(", not measured:")[0].split(", error:")[0]
            return Progress(self.part, task, f"ledger entry: {entry['decision']}{rest}")
        return Progress(self.part, task, _clip(_PERIOD_END.sub("", message.removeprefix("greenflow: "))))


def _short_trace(match: re.Match[str]) -> str:
    return f"{match['md']} {match['hm']} (trace)"


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _trace(moment: datetime | None) -> str:
    return "?" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%M} (trace)"


def _clip(text: str, width: int = 150) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def describe_wait(progress: Progress, now: datetime) -> str:
    """``until 2022-06-01 12:00 (trace) = 02:21:25 UTC wall clock, 8 s from now``."""
    parts = []
    if progress.wait_trace is not None:
        parts.append(_trace(progress.wait_trace))
    if progress.wait_wall is not None:
        left = max((progress.wait_wall - now).total_seconds(), 0.0)
        parts.append(f"{progress.wait_wall.astimezone(UTC):%H:%M:%S} UTC wall clock, {left:.0f} s from now")
    return "until " + " = ".join(parts) if parts else ""
