"""The carbon options, written once: a name that is not an option fails naming the closest one."""

from __future__ import annotations

from datetime import timedelta

import pytest

from greenflow.errors import InvalidInput
from greenflow.options import CARBON_DEFAULTS, CARBON_OPTION_NAMES, PLANNING_OPTION_NAMES, CarbonOptions
from greenflow.spec import CarbonSpec


def test_every_option_has_a_default_and_the_planning_ones_are_a_subset() -> None:
    assert set(CARBON_DEFAULTS) == CARBON_OPTION_NAMES == set(CarbonOptions.__optional_keys__)
    assert PLANNING_OPTION_NAMES < CARBON_OPTION_NAMES


def test_a_missing_option_takes_its_documented_default() -> None:
    spec = CarbonSpec.build(region="GB")
    assert spec.provider == CARBON_DEFAULTS["provider"] == "ukgrid"
    assert spec.expected_duration == timedelta(hours=1) and spec.max_staleness == timedelta(hours=6)
    assert spec.on_provider_error == "wait" and spec.sample_interval == 0.1 and spec.min_savings_pct == 5.0
    assert spec.regions == () and spec.tags == () and spec.provider_options == {}


def test_a_misspelt_option_fails_naming_the_closest() -> None:
    with pytest.raises(InvalidInput) as error:
        CarbonSpec.build(regoin="GB")  # type: ignore[call-arg]
    assert "'regoin' is not a carbon option" in error.value.message
    assert "did you mean 'region'?" in (error.value.fix or "")


def test_a_round_trip_through_the_trigger_kwargs_keeps_the_spec() -> None:
    spec = CarbonSpec.build(region="GB", expected_duration="2h", max_delay="6h", estimate="20g", tags=["gpu"])
    assert CarbonSpec.from_kwargs(spec.to_kwargs()) == spec


# -- the one table ----------------------------------------------------------------------------------------
def test_the_table_matches_the_typed_options_and_the_core_registries() -> None:
    from greenflow.intensity.correction import CORRECTION_MODES
    from greenflow.intensity.policy import ON_PROVIDER_ERROR as POLICIES
    from greenflow.intensity.providers.base import PROVIDERS
    from greenflow.options import (
        ADAPTER_OPTION_NAMES,
        CORRECTION_MODE_NAMES,
        ON_PROVIDER_ERROR,
        OPTION,
        PROVIDER_NAMES,
    )

    assert set(OPTION) - ADAPTER_OPTION_NAMES == set(CarbonOptions.__optional_keys__)
    assert list(PROVIDER_NAMES) == list(PROVIDERS)
    assert CORRECTION_MODE_NAMES == CORRECTION_MODES and ON_PROVIDER_ERROR == POLICIES
    # duration_declared is not an option: parse_options derives it (was expected_duration given?).
    spec_fields = set(CarbonSpec.__dataclass_fields__) - {"duration_declared"}
    assert {OPTION[name].spec_field for name in CARBON_OPTION_NAMES} == spec_fields


def test_an_entry_point_default_that_differs_says_why() -> None:
    from greenflow.options import OPTIONS, defaults_for

    for option in OPTIONS:
        for entry_point, (value, why) in option.defaults.items():
            assert entry_point in option.entry_points and len(why) > 20, option.name
            assert defaults_for(entry_point).get(option.name, value) == value
    assert defaults_for("run")["max_delay"] == timedelta(0) and defaults_for("airflow")["max_delay"] is None
    assert len({str(defaults_for(e)["on_provider_error"]) for e in ("airflow", "prefect", "run", "plan")}) == 1


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"budget": ""}, "budget='' is empty or has surrounding spaces"),
        ({"budget": "  gpu-monthly  "}, "budget='  gpu-monthly  ' is empty or has surrounding spaces"),
        ({"budget": "b" * 121}, "is 121 characters long, over the ledger's 120"),
        ({"min_savings": 150}, "min_savings=150 is out of range"),
        ({"threshold": -10}, "threshold=-10 is out of range"),
        ({"expected_duration": "0s"}, "expected_duration='0s' is not positive"),
        ({"max_delay": "400d"}, "max_delay=9600h is longer than 366 days"),
        ({"sample_interval": float("nan")}, "sample_interval=nan is not a finite number"),
        ({"deadline": "2021-01-01T00:00Z"}, "leaves no room for expected_duration"),
        ({"on_provider_error": "retry"}, "on_provider_error='retry' is not one of run, wait, fail"),
        ({"interruptible": "maybe"}, "interruptible='maybe' is not true or false"),
    ],
)
def test_a_bad_value_is_refused_by_its_row_naming_the_option(given: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput) as error:
        CarbonSpec.build(region="GB", **given)  # type: ignore[arg-type]
    assert message in error.value.message
    assert error.value.fix


def test_a_deadline_that_passed_after_declaration_rebuilds_for_the_trigger() -> None:
    from datetime import UTC, datetime

    declared = CarbonSpec.build(region="GB", deadline=datetime(2099, 1, 1, tzinfo=UTC))
    late = {**declared.to_kwargs(), "deadline": "2021-01-01T00:00:00+00:00"}
    assert CarbonSpec.from_kwargs(late).deadline == datetime(2021, 1, 1, tzinfo=UTC)


def test_a_replay_judges_a_deadline_against_the_trace_time() -> None:
    spec = CarbonSpec.build(
        region="ES",
        provider="trace",
        provider_options={"now": "2022-06-01T00:00Z"},
        deadline="2022-06-01T12:00Z",
    )
    assert spec.deadline is not None


def test_the_configuration_page_lists_the_table() -> None:
    from pathlib import Path

    from greenflow.options import markdown_table

    page = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text(encoding="utf-8")
    begin, end = (
        "<!-- options table: generated by greenflow.options.markdown_table() -->",
        "<!-- end of options table -->",
    )
    assert begin in page and end in page, "docs/configuration.md lost its generated options table markers"
    shown = page.split(begin, 1)[1].split(end, 1)[0].strip()
    assert shown == markdown_table().strip(), (
        "docs/configuration.md's options table differs from the table in greenflow/options.py: regenerate it with "
        "python -c 'from greenflow.options import markdown_table; print(markdown_table())'"
    )


def test_a_deadline_given_where_the_default_delay_is_zero_is_not_both_deadline_and_delay() -> None:
    spec = CarbonSpec.declare({"region": "GB", "deadline": "10h"}, "run")
    assert spec.max_delay is None and spec.deadline == timedelta(hours=10)
    assert CarbonSpec.declare({"region": "GB"}, "run").max_delay == timedelta(0)
