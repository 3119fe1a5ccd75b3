"""The provider registry and the interface every provider keeps."""

from __future__ import annotations

from datetime import timedelta

import pytest

from greenflow.errors import InvalidInput
from greenflow.intensity.providers import PROVIDERS, IntensityProvider, get_provider


def test_the_five_providers_are_registered():
    assert PROVIDERS == ["ukgrid", "electricitymaps", "watttime", "carbon-aware-sdk", "trace"]


def test_unknown_provider_lists_the_known_ones():
    with pytest.raises(InvalidInput) as caught:
        get_provider("greengrid")
    assert "'greengrid'" in caught.value.message
    assert all(name in caught.value.fix for name in PROVIDERS)


def test_unknown_option_lists_the_accepted_ones():
    with pytest.raises(InvalidInput) as caught:
        get_provider("ukgrid", tokn="x")
    assert "'tokn'" in caught.value.message and "base_url" in caught.value.fix


@pytest.mark.parametrize(
    ("name", "options", "signal", "refresh"),
    [
        ("ukgrid", {}, "average", timedelta(minutes=30)),
        ("electricitymaps", {}, "average", timedelta(hours=1)),
        ("watttime", {}, "marginal", timedelta(minutes=5)),
        ("carbon-aware-sdk", {"base_url": "http://127.0.0.1:9"}, "marginal", timedelta(minutes=5)),
        ("trace", {"region": "ES"}, "average", timedelta(0)),
    ],
)
def test_each_provider_keeps_the_interface(name, options, signal, refresh):
    provider = get_provider(name, **options)
    assert isinstance(provider, IntensityProvider)
    assert provider.name == name and provider.signal == signal and provider.refresh_interval == refresh


@pytest.mark.parametrize("name", ["ukgrid", "electricitymaps", "watttime", "trace"])
@pytest.mark.parametrize("hours", [0, -5, float("nan"), float("inf")])
def test_non_positive_hours_are_refused_before_any_request(name, hours):
    provider = get_provider(name, **({"region": "ES", "now": "2022-01-01T00:00Z"} if name == "trace" else {}))
    region = {"ukgrid": "national", "electricitymaps": "FR", "watttime": "CAISO_NORTH", "trace": "ES"}[name]
    with pytest.raises(InvalidInput, match="hours"):
        provider.forecast(region, hours=hours)
