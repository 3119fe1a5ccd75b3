"""``greenflow ledger``: read, export and verify the provenance ledger."""

from __future__ import annotations

import csv
import json
import sys
from datetime import datetime
from typing import Any

import typer

from greenflow.cli.context import open_ledger, state
from greenflow.cli.output import console, err_console, handle_errors, print_json, print_table, say
from greenflow.clock import format_duration, parse_duration, parse_time, utcnow
from greenflow.errors import InvalidInput
from greenflow.ledger import Entry, EntryFilter, VerificationReport
from greenflow.units import format_energy, format_mass

app = typer.Typer(help="The provenance ledger.", no_args_is_help=True)

# Heavy fields left out of `show --json` (they stay in `export`): the stored forecast copy.
_SHOW_OMITS = ("forecast",)


def parse_since(text: str | None, name: str = "--since") -> datetime | None:
    """An ISO time (``2024-05-01T00:00Z``) or a look-back duration (``24h``, ``7d``)."""
    if text is None:
        return None
    if "T" in text or (text[:4].isdigit() and "-" in text):
        return parse_time(text, name)  # looks like a time: its own error (e.g. naive) is the helpful one
    try:
        return utcnow() - parse_duration(text, name)
    except InvalidInput:
        raise InvalidInput(
            f"{name}={text!r} is neither a time nor a duration", fix="write 2024-05-01T00:00Z or 24h / 7d"
        ) from None


def _filter(
    workflow: str | None, run: str | None, task: str | None, decision: str | None, since: str | None, until: str | None
) -> EntryFilter:
    return EntryFilter(
        workflow_id=workflow,
        run_id=run,
        task_id=task,
        decision=decision,
        since=parse_since(since),
        until=parse_since(until, "--until"),
    )


@app.command("show")
@handle_errors
def show(
    workflow: str | None = typer.Option(None, "--workflow", help="DAG id / flow name."),
    run: str | None = typer.Option(None, "--run", help="Run id."),
    task: str | None = typer.Option(None, "--task", help="Task id."),
    decision: str | None = typer.Option(None, "--decision", help="ran_now, deferred, skipped_budget, …"),
    since: str | None = typer.Option(None, "--since", help="ISO time or look-back such as 24h."),
    until: str | None = typer.Option(None, "--until", help="ISO time or look-back."),
    limit: int = typer.Option(50, "--limit", min=0, help="Most recent N entries."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Show the most recent entries (oldest first)."""
    entries = open_ledger().entries(_filter(workflow, run, task, decision, since, until), limit=limit, descending=True)[
        ::-1
    ]
    if as_json:
        print_json([{k: v for k, v in e.to_dict().items() if k not in _SHOW_OMITS} for e in entries])
        return
    if not entries:
        say("no entries yet: run a task with `greenflow run -- CMD` or add CarbonAwareOperator to a DAG")
        return
    print_table(
        "Ledger",
        [
            "seq",
            "recorded",
            "workflow",
            "run",
            "task",
            "try",
            "region",
            "decision",
            "deferred",
            "energy",
            "method",
            "gCO2e/kWh",
            "emissions",
            "saved",
            "clock",
        ],
        [_row(e) for e in entries],
    )
    if any(_replay_speed(e) is not None for e in entries):
        console.print(
            "clock 'replay Nx': a replayed trace (extra.replay); its request, start and deferred times are the "
            "trace's, not real time (`recorded` is real time)"
        )


def _row(entry: Entry) -> list[Any]:
    methods = sorted({m for m in (entry.method_gpu, entry.method_cpu, entry.method_dram) if m})
    deferred = None if entry.deferred_seconds is None else format_duration(parse_duration(entry.deferred_seconds))
    return [
        entry.seq,
        entry.recorded_at.isoformat(timespec="minutes") if entry.recorded_at else None,
        entry.workflow_id,
        entry.run_id,
        entry.task_id,
        entry.attempt,
        entry.region,
        entry.decision,
        deferred,
        format_energy(entry.energy_kwh) if entry.energy_kwh is not None else None,
        "+".join(methods) or None,
        None if entry.intensity_g_per_kwh is None else f"{entry.intensity_g_per_kwh:.0f}",
        format_mass(entry.operational_g) if entry.operational_g is not None else None,
        format_mass(entry.saved_g) if entry.saved_g is not None else None,
        "real" if (speed := _replay_speed(entry)) is None else f"replay {speed:g}x",
    ]


def _replay_speed(entry: Entry) -> float | None:
    """The replay speed of an entry planned on a replayed trace, ``None`` for real time."""
    replay = (entry.extra or {}).get("replay")
    if not isinstance(replay, dict):
        return None
    speed = replay.get("speed")
    return float(speed) if isinstance(speed, (int, float)) and speed > 0 else None


@app.command("export")
@handle_errors
def export(
    fmt: str = typer.Option("json", "--format", help="csv or json."),
    output: str | None = typer.Option(None, "--output", "-o", help="File to write (stdout by default)."),
    workflow: str | None = typer.Option(None, "--workflow"),
    since: str | None = typer.Option(None, "--since"),
    until: str | None = typer.Option(None, "--until"),
) -> None:
    """Export every matching entry, with all fields (JSON keeps the stored forecasts)."""
    if fmt not in ("csv", "json"):
        raise InvalidInput(f"--format {fmt!r} is unknown", fix="use --format csv or --format json")
    entries = open_ledger().entries(_filter(workflow, None, None, None, since, until))
    stream = open(output, "w", newline="", encoding="utf-8") if output else sys.stdout  # noqa: SIM115
    try:
        if fmt == "json":
            json.dump([e.to_dict() for e in entries], stream, indent=2, default=str)
            stream.write("\n")
        else:
            _write_csv(entries, stream)
    finally:
        if output:
            stream.close()
            err_console.print(f"wrote {len(entries)} entries to {output}")


def _write_csv(entries: list[Entry], stream: Any) -> None:
    rows = [e.to_dict() for e in entries]
    fields = list(rows[0]) if rows else list(Entry.__dataclass_fields__)
    writer = csv.DictWriter(stream, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        # Nested values (policy, forecast, devices) become JSON; None stays an empty cell, never 0.
        writer.writerow(
            {
                k: json.dumps(v, default=str) if isinstance(v, (dict, list)) else ("" if v is None else v)
                for k, v in row.items()
            }
        )


@app.command("verify")
@handle_errors
def verify(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    anchors: list[str] | None = typer.Option(
        None,
        "--anchor",
        help="Signed checkpoint (file, or a directory of them) the chain must still contain; repeatable.",
    ),
    public_key: str | None = typer.Option(
        None, "--public-key", help="Public key file the anchors must be signed with (default: the one they embed)."
    ),
    full: bool = typer.Option(False, "--full", help="With --anchor: recompute every entry, not only the newer ones."),
) -> None:
    """Recompute the hash chain; exit 1 and name the damaged entries (or lost anchors) if it does not hold."""
    from greenflow.ledger.anchor import anchor_files, public_key_from_file, read_anchor

    key = public_key_from_file(public_key) if public_key else None
    checked = [read_anchor(path, key) for path in anchor_files(anchors or [])]
    report = open_ledger(must_exist=True).verify(anchors=checked, full=full or not checked)
    if as_json:
        print_json(report.to_dict())
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(code=1)


def _print_report(report: VerificationReport) -> None:
    scope = (
        f"{report.entries} entries from seq {report.from_seq} (the newest anchor)"
        if report.from_seq > 1
        else f"{report.entries} entries"
    )
    anchored = f", {len(report.anchors)} anchor(s) found" if report.anchors else ""
    if report.ok:
        console.print(
            f"ledger verified: {scope}, chain intact{anchored}; tip seq {report.head_seq} hash {report.head_hash}",
            markup=False,
            highlight=False,
        )
        return
    console.print(f"ledger damaged: {len(report.problems)} problem(s) in {scope}", markup=False, highlight=False)
    print_table(
        None,
        ["kind", "seq", "entry id", "detail"],
        [[p.kind, p.seq, p.entry_id, p.detail] for p in report.problems],
    )


@app.command("anchor")
@handle_errors
def anchor(
    key: str | None = typer.Option(
        None, "--key", help="Ed25519 private key file (PEM or base64); default: $GREENFLOW_ANCHOR_KEY."
    ),
    output_dir: str | None = typer.Option(
        None, "--dir", help="Write the anchor into this directory (outside the database) instead of stdout."
    ),
) -> None:
    """Sign the chain's current tip (seq, hash, time, ledger id) so that verify --anchor can detect a cut end."""
    from greenflow.ledger.anchor import KEY_ENV, make_anchor, private_key_from_env, private_key_from_file, write_anchor

    private_key = private_key_from_file(key) if key else private_key_from_env()
    if private_key is None:
        raise InvalidInput(
            "no anchor key given",
            fix=f"pass --key FILE or set {KEY_ENV} (make a key pair with `greenflow ledger keygen`)",
        )
    signed = make_anchor(open_ledger(create_if_empty=False), private_key)
    if output_dir is None:
        sys.stdout.write(signed.to_json())
        return
    path = write_anchor(signed, output_dir)
    err_console.print(
        f"anchored seq {signed.checkpoint.seq} hash {signed.checkpoint.entry_hash} ({signed.checkpoint.key_id}) "
        f"in {path}",
        markup=False,
        highlight=False,
    )


@app.command("keygen")
@handle_errors
def keygen(
    output: str = typer.Option(..., "--out", help="Private key file to create (the public key goes to FILE.pub)."),
) -> None:
    """Make an Ed25519 key pair for `greenflow ledger anchor` (private key mode 0600, never overwritten)."""
    import os
    from pathlib import Path

    from greenflow.ledger.anchor import generate_key, key_id, private_key_pem, public_key_pem

    private_path, public_path = Path(output), Path(f"{output}.pub")
    for path in (private_path, public_path):
        if path.exists():
            raise InvalidInput(f"{path} already exists", fix="choose another --out; a key is never overwritten")
    private_key = generate_key()
    try:
        descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise InvalidInput(f"cannot create {private_path}: {exc.strerror}", fix="choose a writable --out") from None
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private_key_pem(private_key))
    public_path.write_bytes(public_key_pem(private_key.public_key()))
    console.print(
        f"wrote {private_path} (private, keep it off the database host) and {public_path}; "
        f"key id {key_id(private_key.public_key())}",
        markup=False,
        highlight=False,
    )


@app.command("flush")
@handle_errors
def flush(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Write the runs `greenflow run` spooled and not yet recorded (waits for writers still at work).

    A file the ledger can never take is moved to the spool's rejected/ directory with its reason beside
    it (exit 1); one that failed for a passing reason (database down) is kept for the next flush (exit 1).
    The files of runs still under way are left to them; those of runs whose greenflow was killed become
    ``interrupted`` entries.
    """
    from greenflow import spool

    directory = spool.spool_dir(state.ledger_url)
    report = spool.flush(open_ledger(), directory)
    kept = [d for d in report.deliveries if d.status in ("failed", "busy")]
    rejected = [d for d in report.deliveries if d.status == "rejected"]
    if as_json:
        print_json(
            {
                "spool": str(directory),
                "written": report.count("written"),
                "already_written": report.count("gone"),
                "running": report.count("running"),
                "kept": [{"file": d.path.name, "reason": d.reason} for d in kept],
                "rejected": [{"file": d.path.name, "reason": d.reason, "moved_to": str(d.moved_to)} for d in rejected],
            }
        )
    else:
        say(
            f"{report.count('written')} spooled run(s) written, {report.count('gone')} already written by "
            f"another writer, {report.count('running')} still running, {len(kept)} kept in {directory}, "
            f"{len(rejected)} rejected"
        )
        for delivery in kept:
            say(f"kept {delivery.path.name} for the next flush: {delivery.reason}", error=True)
        for delivery in rejected:
            say(
                f"rejected {delivery.path.name}: {delivery.reason}; moved to {delivery.moved_to} "
                f"(reason in {delivery.path.name}.reason beside it)",
                error=True,
            )
    if kept or rejected:
        raise typer.Exit(1)
