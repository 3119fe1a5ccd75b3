"""Market-based Scope 2: hourly matching to declared instruments, residual mix, shares, tampering."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from greenflow.errors import InvalidInput
from greenflow.ledger import Entry, Identity, Ledger
from greenflow.report import ReportPeriod, build_report
from greenflow.report.instruments import InstrumentStore, ResidualMix, parse_instrument, parse_instrument_csv

T10 = datetime(2026, 11, 10, 10, tzinfo=UTC)
NOVEMBER = ReportPeriod.parse("2026-11")


def run(n: int, team: str, region: str, start: datetime, hours: int, kwh: float) -> Entry:
    end = start + timedelta(hours=hours)
    return Entry.for_attempt(
        Identity("cli", f"{team}_wf", f"r{n}", "t"),
        "ran_now",
        team=team,
        region=region,
        actual_start=start,
        ended_at=end,
        recorded_at=end,
        energy_kwh=kwh,
        energy_gpu_kwh=kwh,
        method_gpu="nvml_energy_counter",
        operational_g=kwh * 200,
        intensity_g_per_kwh=200.0,
    )


@pytest.fixture
def ledger(ledger_url: str) -> Ledger:
    """GB: vision 10 kWh in hour 10, nlp 20 kWh over hours 10-11; FR: 5 kWh; a PPA of 15 kWh/h for hours 10-11."""
    instance = Ledger(ledger_url)
    instance.append(run(1, "vision", "GB", T10, 1, 10.0))
    instance.append(run(2, "nlp", "GB", T10, 2, 20.0))
    instance.append(run(3, "nlp", "FR", T10, 1, 5.0))
    store = InstrumentStore(instance)
    store.add([parse_instrument("GB", "2026-11-10T10:00Z", "2026-11-10T12:00Z", "0.03", "0", "ppa", "PPA-7")])
    return instance


def market(ledger: Ledger, scope: str = "all") -> dict:  # type: ignore[type-arg]
    return build_report(ledger, NOVEMBER, scope).to_dict()  # type: ignore[no-any-return]


def test_without_a_residual_mix_there_is_no_market_based_figure_only_the_reason(ledger: Ledger) -> None:
    figure = market(ledger)["figures"]["market_based_g"]
    assert figure["value"] is None
    assert "GB" in figure["reason"] and "residual" in figure["reason"]
    assert "FR" in figure["reason"]


def test_hourly_matching_with_the_unused_hour_lost_and_the_rest_at_the_residual_mix(ledger: Ledger) -> None:
    store = InstrumentStore(ledger)
    store.set_residual(ResidualMix("GB", 300, "AIB 2025"))
    store.set_residual(ResidualMix("FR", 50, "AIB 2025"))
    report = market(ledger)
    # Hour 10: 20 kWh demand, 15 supplied -> 5 at 300 g. Hour 11: 10 kWh demand, 15 supplied (5 unused, lost).
    assert report["figures"]["market_based_g"]["value"] == pytest.approx(5 * 300 + 5 * 50)
    gb = next(line for line in report["market_based"]["regions"] if line["region"] == "GB")
    assert gb["matched_kwh"] == pytest.approx(25)
    assert gb["unmatched_kwh"] == pytest.approx(5)
    assert gb["instruments"][0]["intact"] is True
    # Location-based stays what the entries say, untouched by instruments.
    assert report["figures"]["location_based_g"]["value"] == pytest.approx(35 * 200)
    assert "not comparable with location_based_g" in report["figures"]["market_based_g"]["uncertainty"]


def test_scoped_reports_share_each_hour_so_two_teams_cannot_both_claim_the_ppa(ledger: Ledger) -> None:
    store = InstrumentStore(ledger)
    store.set_residual(ResidualMix("GB", 300, "AIB 2025"))
    store.set_residual(ResidualMix("FR", 50, "AIB 2025"))
    vision = market(ledger, "team:vision")["market_based"]["regions"]
    nlp = market(ledger, "team:nlp")["market_based"]["regions"]
    gb_vision = vision[0]
    gb_nlp = next(line for line in nlp if line["region"] == "GB")
    assert gb_vision["matched_kwh"] == pytest.approx(7.5)  # half of hour 10's 15 kWh
    assert gb_nlp["matched_kwh"] == pytest.approx(17.5)  # the other half + all of hour 11's 10 kWh
    assert gb_vision["matched_kwh"] + gb_nlp["matched_kwh"] == pytest.approx(25)
    assert market(ledger, "team:vision")["figures"]["market_based_g"]["value"] == pytest.approx(2.5 * 300)


def test_an_instrument_changed_behind_greenflows_back_withholds_the_figure(ledger: Ledger) -> None:
    store = InstrumentStore(ledger)
    store.set_residual(ResidualMix("GB", 300, "AIB 2025"))
    store.set_residual(ResidualMix("FR", 50, "AIB 2025"))
    with ledger.engine.begin() as connection:
        connection.execute(text("UPDATE energy_instruments SET mwh = 1000"))
    report = market(ledger)
    assert report["figures"]["market_based_g"]["value"] is None
    assert "changed outside greenflow" in report["figures"]["market_based_g"]["reason"]
    assert store.instruments()[0].intact is False


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ("GB,2026-11-01,2026-11-30,abc,0,ppa", "mwh='abc'"),
        ("GB,2026-11-01,2026-11-30,-3,0,ppa", "mwh='-3'"),
        ("GB,2026-11-01,2026-11-30,nan,0,ppa", "mwh='nan'"),
        ("GB,2026-11-01,2026-11-30,10,5000,ppa", "factor='5000'"),
        ("GB,2026-11-30,2026-11-01,10,0,ppa", "not after"),
        ("GB,2026-11-01T00:00,2026-11-30,10,0,ppa", "2026-11-01T00:00"),
        ("GB,2026-11-01,2026-11-30,10,0,coupon", "coupon"),
        (",2026-11-01,2026-11-30,10,0,ppa", "region"),
    ],
)
def test_a_bad_instrument_line_is_refused_naming_the_file_and_line(line: str, named: str) -> None:
    text_ = "region,from,to,mwh,factor,kind\nGB,2026-11-01,2026-11-30,10,0,ppa\n" + line + "\n"
    with pytest.raises(InvalidInput) as error:
        parse_instrument_csv(text_, "deals.csv")
    assert "deals.csv line 3" in str(error.value)
    assert named in str(error.value)
