"""``greenflow instruments``: declare the contractual instruments and residual-mix factors of market-based Scope 2."""

from __future__ import annotations

import typer

from greenflow.cli.context import open_ledger
from greenflow.cli.output import console, handle_errors, print_json, print_table
from greenflow.report.instruments import (
    KINDS,
    MAX_FACTOR,
    InstrumentStore,
    ResidualMix,
    describe,
    parse_instrument,
    parse_number,
    read_instrument_file,
)

app = typer.Typer(help="Energy instruments (PPAs, certificates) and residual-mix factors.", no_args_is_help=True)


@app.command("add")
@handle_errors
def add(
    region: str = typer.Option(..., "--region", help="Grid region the instrument applies to, e.g. GB."),
    start: str = typer.Option(..., "--from", help="First day of validity (2026-11-01) or ISO time."),
    end: str = typer.Option(..., "--to", help="Last day of validity, included, or ISO time (exclusive)."),
    mwh: str = typer.Option(..., "--mwh", help="Volume in MWh."),
    factor: str = typer.Option(..., "--factor", help="Emission factor of the instrument, gCO2e/kWh (0 for a PPA)."),
    kind: str = typer.Option(..., "--kind", help=", ".join(KINDS) + "."),
    reference: str | None = typer.Option(None, "--reference", help="Contract or certificate reference."),
) -> None:
    """Declare one instrument."""
    instrument = parse_instrument(region, start, end, mwh, factor, kind, reference)
    InstrumentStore(open_ledger()).add([instrument])
    console.print(
        f"instrument {instrument.instrument_id}: {instrument.mwh:g} MWh {instrument.kind} in {instrument.region} "
        f"at {instrument.factor_g_per_kwh:g} gCO2e/kWh, {instrument.valid_from.isoformat()} to "
        f"{instrument.valid_to.isoformat()} (sha256 {instrument.content_hash[:12]}…)",
        markup=False,
        highlight=False,
    )


@app.command("import")
@handle_errors
def import_file(
    path: str = typer.Argument(..., help="CSV with header region,from,to,mwh,factor,kind[,reference]."),
) -> None:
    """Declare every instrument of a CSV file (all or none: a bad line is named and nothing is written)."""
    instruments = read_instrument_file(path)
    InstrumentStore(open_ledger()).add(instruments)
    console.print(f"imported {len(instruments)} instruments from {path}", markup=False, highlight=False)


@app.command("list")
@handle_errors
def list_instruments(
    region: str | None = typer.Option(None, "--region", help="Only this region."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """The instruments and residual-mix factors, each with its hash check."""
    store = InstrumentStore(open_ledger())
    rows = describe(store.instruments(region))
    residuals = store.residuals()
    if as_json:
        print_json(
            {
                "instruments": rows,
                "residual_mix": [s.value.content() | {"content_hash": s.stored_hash, "intact": s.intact}
                                 for _r, s in sorted(residuals.items())],
            }
        )  # fmt: skip
        return
    print_table(
        "Instruments",
        ["id", "region", "kind", "MWh", "gCO2e/kWh", "from", "to", "reference", "hash"],
        [
            [r["instrument_id"][:8], r["region"], r["kind"], f"{r['mwh']:g}", f"{r['factor_g_per_kwh']:g}",
             r["valid_from"], r["valid_to"], r["reference"], "ok" if r["intact"] else "CHANGED OUTSIDE GREENFLOW"]
            for r in rows
        ],
    )  # fmt: skip
    print_table(
        "Residual mix",
        ["region", "gCO2e/kWh", "source", "declared", "hash"],
        [
            [region, f"{s.value.factor_g_per_kwh:g}", s.value.source, s.value.declared_at.isoformat(),
             "ok" if s.intact else "CHANGED OUTSIDE GREENFLOW"]
            for region, s in sorted(residuals.items())
        ],
    )  # fmt: skip


@app.command("residual")
@handle_errors
def residual(
    region: str = typer.Option(..., "--region", help="Grid region, e.g. GB."),
    factor: str = typer.Option(..., "--factor", help="Residual-mix factor, gCO2e/kWh."),
    source: str = typer.Option(..., "--source", help='Where the factor comes from, e.g. "AIB 2025".'),
) -> None:
    """Declare (or replace) a region's residual-mix factor; greenflow has no default."""

    mix = InstrumentStore(open_ledger()).set_residual(
        ResidualMix(region, parse_number(factor, "factor", 0.0, MAX_FACTOR), source)
    )
    console.print(
        f"residual mix {mix.region}: {mix.factor_g_per_kwh:g} gCO2e/kWh ({mix.source})", markup=False, highlight=False
    )
