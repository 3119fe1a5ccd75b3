"""CUDA_VISIBLE_DEVICES in every form CUDA accepts, resolved to physical GPUs through (fake) NVML."""

from __future__ import annotations

import pytest

from greenflow.errors import InvalidInput
from greenflow.metering.gpu_selection import (
    GpuSelector,
    parse_cuda_visible_devices,
    resolve_gpus,
    select_gpus,
)
from greenflow.testing.fake_nvml import FakeGpu, FakeNvml

UUID_A = "GPU-8c1b2a3d-0000-1111-2222-aaaaaaaaaaaa"
UUID_B = "GPU-8c1b9f00-3333-4444-5555-bbbbbbbbbbbb"
UUID_C = "GPU-77e0c1d2-6666-7777-8888-cccccccccccc"
MIG_B1 = "MIG-4f1e0c2a-9999-5555-aaaa-000000000001"
MIG_B2 = "MIG-4f1e0c2a-9999-5555-aaaa-000000000002"


def _fake() -> FakeNvml:
    return FakeNvml(
        [
            FakeGpu(UUID_A),
            FakeGpu(UUID_B, mig_mode=True, mig_uuids=(MIG_B1, MIG_B2)),
            FakeGpu(UUID_C, name="NVIDIA H100 80GB HBM3"),
        ]
    )


def _resolve(value: str | None, environ: dict[str, str] | None = None):
    fake = _fake()
    backend = fake.backend()
    backend.acquire()
    try:
        return resolve_gpus(parse_cuda_visible_devices(value), backend, environ or {})
    finally:
        backend.release()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", (GpuSelector("index", "0"),)),
        ("0,2", (GpuSelector("index", "0"), GpuSelector("index", "2"))),
        (" 1 , 0 ", (GpuSelector("index", "1"), GpuSelector("index", "0"))),
        (UUID_A, (GpuSelector("uuid", UUID_A),)),
        ("GPU-8c1b2a", (GpuSelector("uuid", "GPU-8c1b2a"),)),
        (MIG_B1, (GpuSelector("mig", MIG_B1),)),
        (f"MIG-{UUID_B}/1/0", (GpuSelector("mig", f"MIG-{UUID_B}/1/0"),)),
        (f"0,{UUID_C}", (GpuSelector("index", "0"), GpuSelector("uuid", UUID_C))),
    ],
)
def test_every_valid_form_parses(value: str, expected: tuple[GpuSelector, ...]) -> None:
    selection = parse_cuda_visible_devices(value)
    assert selection.selectors == expected
    assert selection.warnings == ()


def test_unset_means_every_gpu_and_empty_means_none() -> None:
    assert parse_cuda_visible_devices(None).selectors is None
    assert parse_cuda_visible_devices("").selectors == ()
    assert parse_cuda_visible_devices("  ").selectors == ()


@pytest.mark.parametrize("value", ["-1", "none", "NoDevFiles", "gpu0"])
def test_an_invalid_first_entry_hides_every_gpu_like_cuda(value: str) -> None:
    selection = parse_cuda_visible_devices(value)
    assert selection.selectors == ()
    assert "ignores it and every entry after it" in selection.warnings[0]


def test_an_invalid_entry_hides_the_entries_after_it() -> None:
    selection = parse_cuda_visible_devices("1,-1,0")
    assert selection.selectors == (GpuSelector("index", "1"),)
    assert "'-1'" in selection.warnings[0]


def test_indices_select_those_gpus_in_order() -> None:
    gpus, warnings = _resolve("2,0", {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    assert [g.uuid for g in gpus] == [UUID_C, UUID_A]
    assert [g.index for g in gpus] == [2, 0]
    assert gpus[0].name == "NVIDIA H100 80GB HBM3"
    assert warnings == ()


def test_indices_without_pci_bus_order_warn_that_cuda_may_number_differently() -> None:
    _, warnings = _resolve("0")
    assert any("CUDA_DEVICE_ORDER" in w for w in warnings)


def test_a_unique_uuid_prefix_selects_the_gpu_and_an_ambiguous_one_stops_the_list() -> None:
    gpus, _ = _resolve("GPU-8c1b2a")
    assert [g.uuid for g in gpus] == [UUID_A]
    gpus, warnings = _resolve("GPU-8c1b,2")
    assert gpus == ()
    assert "matches 2 GPUs" in warnings[0]


def test_an_index_that_does_not_exist_ends_the_list() -> None:
    gpus, warnings = _resolve("0,7,2", {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    assert [g.index for g in gpus] == [0]
    assert "GPU index 7 does not exist" in warnings[0]


def test_mig_devices_resolve_to_their_parent_gpu_and_are_listed_on_it() -> None:
    gpus, _ = _resolve(f"{MIG_B1},{MIG_B2}")
    assert len(gpus) == 1
    assert gpus[0].uuid == UUID_B
    assert gpus[0].mig_uuids == (MIG_B1, MIG_B2)


def test_the_cuda_11_mig_form_names_its_parent_gpu() -> None:
    gpus, _ = _resolve(f"MIG-{UUID_B}/1/0")
    assert gpus[0].uuid == UUID_B
    assert gpus[0].mig_uuids == (f"MIG-{UUID_B}/1/0",)


def test_an_unknown_mig_device_is_reported() -> None:
    gpus, warnings = _resolve("MIG-deadbeef-0000")
    assert gpus == ()
    assert "not found by NVML" in warnings[0]
    assert "NVMLError_NotFound" in warnings[0]


def test_a_gpu_listed_twice_is_metered_once() -> None:
    gpus, warnings = _resolve(f"0,{UUID_A}", {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    assert [g.uuid for g in gpus] == [UUID_A]
    assert "listed twice" in warnings[0]


def test_explicit_gpu_indices_win_over_the_environment() -> None:
    selection = select_gpus([1], {"CUDA_VISIBLE_DEVICES": "0"})
    assert selection.selectors == (GpuSelector("index", "1"),)


@pytest.mark.parametrize("bad", [-1, "first", True, 1.5])
def test_bad_explicit_gpu_indices_fail_early_naming_the_value(bad: object) -> None:
    with pytest.raises(InvalidInput, match="gpu_indices entry"):
        select_gpus([bad], {})  # type: ignore[list-item]
