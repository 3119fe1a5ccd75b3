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
    assert spec.on_provider_error == "wait" and spec.sample_interval == 0.1 and spec.min_savings_pct == 0.0
    assert spec.regions == () and spec.tags == () and spec.provider_options == {}


def test_a_misspelt_option_fails_naming_the_closest() -> None:
    with pytest.raises(InvalidInput) as error:
        CarbonSpec.build(regoin="GB")  # type: ignore[call-arg]
    assert "'regoin' is not a carbon option" in error.value.message
    assert "did you mean 'region'?" in (error.value.fix or "")


def test_a_round_trip_through_the_trigger_kwargs_keeps_the_spec() -> None:
    spec = CarbonSpec.build(region="GB", expected_duration="2h", max_delay="6h", estimate="20g", tags=["gpu"])
    assert CarbonSpec.from_kwargs(spec.to_kwargs()) == spec
