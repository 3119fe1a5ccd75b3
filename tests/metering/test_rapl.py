"""RAPL from a fake powercap tree: discovery, deltas, wraparound, and permission errors.

Tests run as root, and ``chmod 000`` does not stop root from reading a file, so permission denied is
simulated by replacing the one seam that reads RAPL files (:class:`RaplReader`) with one that raises
``PermissionError`` for ``energy_uj``, as the kernel does for non-root users since Linux 5.10.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from greenflow.metering import Meter
from greenflow.metering.rapl import RaplCounter, RaplReader, discover, open_rapl
from greenflow.metering.sampler import CounterChannel, Sampler
from greenflow.testing.fake_nvml import FakeNvml

J = 1 / 3.6e6


class DeniedReader(RaplReader):
    """Reads like a non-root user on Linux >= 5.10: energy_uj is 0400 root."""

    def read_text(self, path: Path) -> str:
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return super().read_text(path)


def rapl_meter(root: Path | str, **kwargs: object) -> Meter:
    return Meter(nvml=FakeNvml([]).backend(), environ={}, rapl_root=root, **kwargs)  # type: ignore[arg-type]


def test_packages_and_their_dram_are_found_once_each(rapl_server) -> None:
    rapl_server.zone("intel-rapl:2", "psys", energy_uj=9)  # platform power: contains the packages
    domains = discover(rapl_server.root, RaplReader())
    assert [(d.component, d.label) for d in domains] == [
        ("cpu", "package-0"),
        ("dram", "package-0/dram"),
        ("cpu", "package-1"),
        ("dram", "package-1/dram"),
    ]


def test_a_window_reads_the_package_and_dram_deltas(rapl_server) -> None:
    with rapl_meter(rapl_server.root) as meter:
        meter.begin_window("w")
        rapl_server.add("intel-rapl:0", 3_600_000_000)  # 3600 J
        rapl_server.add("intel-rapl:1", 1_800_000_000)
        rapl_server.add("intel-rapl:0:1", 360_000_000)
        rapl_server.add("intel-rapl:1:1", 360_000_000)
        rapl_server.add("intel-rapl-mmio:0", 3_600_000_000)  # the MMIO twin must not double count
        m = meter.end_window("w")
    assert m.cpu.method == "rapl"
    assert m.cpu.kwh == pytest.approx(5400 * J)
    assert [(d.device, d.kwh) for d in m.cpu.devices] == [
        ("package-0", pytest.approx(3600 * J)),
        ("package-1", pytest.approx(1800 * J)),
    ]
    assert m.dram.method == "rapl"
    assert m.dram.kwh == pytest.approx(720 * J)


def test_a_counter_that_wraps_during_the_window_is_corrected(rapl_tree) -> None:
    max_range = 262_143_328_850
    rapl_tree.zone("intel-rapl:0", "package-0", energy_uj=max_range - 1_000_000, max_range=max_range)
    with rapl_meter(rapl_tree.root) as meter:
        meter.begin_window("w")
        rapl_tree.add("intel-rapl:0", 3_000_000)  # wraps: reads back as 2_000_000
        m = meter.end_window("w")
    assert m.cpu.kwh == pytest.approx(3.0 * J)


def test_polling_keeps_count_of_several_wraps_in_a_long_window(rapl_tree) -> None:
    # A 65 kJ range wraps every ~5 minutes at 200 W: reading only at start and end would lose wraps.
    max_range = 65_532_610_987
    rapl_tree.zone("intel-rapl:0", "package-0", energy_uj=10, max_range=max_range)
    (domain,) = discover(rapl_tree.root, RaplReader())
    counter = RaplCounter(domain, RaplReader())
    clock = [0.0]
    channel = CounterChannel("cpu:package-0", counter.read_joules, poll_interval=1.0)
    sampler = Sampler([channel], 0.1, monotonic=lambda: clock[0])
    first = sampler.snapshot()
    for _ in range(30):  # 30 polls, each 10 kJ apart: 300 kJ, about 4.6 wraps
        clock[0] += 50.0
        rapl_tree.add("intel-rapl:0", 10_000_000_000)
        sampler.tick()
    last = sampler.snapshot()
    assert counter.wraps == 4
    assert last.channels["cpu:package-0"].integral - first.channels["cpu:package-0"].integral == pytest.approx(
        300_000.0
    )


def test_permission_denied_is_reported_not_hidden(rapl_server) -> None:
    with Meter(
        nvml=FakeNvml([]).backend(), environ={}, rapl_root=rapl_server.root, rapl_reader=DeniedReader()
    ) as meter:
        assert meter.setup.cpu.method is None
        with meter.window("w") as w:
            pass
    m = w.measurement
    assert m is not None
    assert m.cpu.kwh is None and m.dram.kwh is None
    for reason in (m.cpu.reason or "", m.dram.reason or ""):
        assert "permission denied" in reason
        assert "root-only since Linux 5.10" in reason
    assert "energy_uj" in (m.cpu.reason or "")


def test_with_rapl_denied_and_a_tdp_the_cpu_is_estimated_and_the_reason_kept(rapl_server) -> None:
    reader = DeniedReader()
    with Meter(
        nvml=FakeNvml([]).backend(), environ={}, rapl_root=rapl_server.root, rapl_reader=reader, cpu_tdp_watts=150
    ) as meter:
        assert meter.setup.cpu.method == "estimate"
        with meter.window("w") as w:
            sum(range(100_000))
    m = w.measurement
    assert m is not None
    assert m.cpu.method == "estimate"
    assert "permission denied" in (m.cpu.reason or "")
    assert "estimate: CPU TDP 150 W" in (m.cpu.reason or "")


def test_one_unreadable_socket_leaves_cpu_unmeasured_rather_than_half_counted(rapl_server) -> None:
    class HalfDenied(RaplReader):
        def read_text(self, path: Path) -> str:
            if path.parent.name == "intel-rapl:1" and path.name == "energy_uj":
                raise PermissionError(13, "Permission denied", str(path))
            return super().read_text(path)

    setup = open_rapl(rapl_server.root, HalfDenied())
    assert setup.cpu == ()
    assert "intel-rapl:1" in (setup.cpu_reason or "")
    assert len(setup.dram) == 2


def test_a_domain_that_vanishes_mid_window_has_no_number(rapl_tree) -> None:
    rapl_tree.zone("intel-rapl:0", "package-0", energy_uj=5)
    with rapl_meter(rapl_tree.root) as meter:
        meter.begin_window("w")
        (rapl_tree.root / "intel-rapl:0" / "energy_uj").unlink()
        m = meter.end_window("w")
    assert m.cpu.kwh is None
    assert "RAPL read failed" in (m.cpu.reason or "")


def test_a_laptop_without_dram_domain_says_so(rapl_tree) -> None:
    rapl_tree.zone("intel-rapl:0", "package-0")
    rapl_tree.zone("intel-rapl:0:0", "core")
    with rapl_meter(rapl_tree.root) as meter, meter.window("w") as w:
        pass
    assert w.measurement is not None
    assert w.measurement.cpu.method == "rapl"
    assert w.measurement.dram.kwh is None
    assert "no RAPL dram domain" in (w.measurement.dram.reason or "")


def test_the_root_comes_from_greenflow_rapl_root_when_not_given(rapl_server) -> None:
    meter = Meter(nvml=FakeNvml([]).backend(), environ={"GREENFLOW_RAPL_ROOT": str(rapl_server.root)})
    with meter:
        assert meter.setup.cpu.devices == ("package-0", "package-1")


def test_a_missing_root_explains_how_to_point_at_it(tmp_path: Path) -> None:
    with rapl_meter(tmp_path / "nowhere") as meter:
        reason = meter.setup.cpu.reason or ""
    assert "does not exist" in reason and "GREENFLOW_RAPL_ROOT" in reason
