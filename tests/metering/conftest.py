"""Fixtures for the metering tests: a fake powercap tree, and the skip rule for ``@pytest.mark.gpu``."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest


@functools.cache
def real_gpu_count() -> tuple[int, str]:
    """GPUs the real NVML sees on this machine, and why there are none."""
    try:
        import pynvml
    except ImportError:
        return 0, "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return 0, f"no GPU: {exc} ({type(exc).__name__})"
    try:
        return int(pynvml.nvmlDeviceGetCount()), "NVML reports no GPU"
    finally:
        pynvml.nvmlShutdown()


@pytest.fixture
def real_gpus() -> tuple[int, str]:
    """(GPUs the real, unmocked NVML sees here, why there are none)."""
    return real_gpu_count()


@pytest.fixture(autouse=True)
def _skip_without_gpu(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("gpu") is None:
        return
    count, reason = real_gpu_count()
    if count == 0:
        pytest.skip(f"needs a real NVIDIA GPU ({reason})")


class RaplTree:
    """A powercap tree in a temp dir, laid out like ``/sys/class/powercap`` (subzones also flattened
    at the root as symlinks, as the kernel does)."""

    MAX_RANGE = 262_143_328_850

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def zone(self, zone: str, name: str, energy_uj: int = 0, max_range: int = MAX_RANGE) -> Path:
        """Create a zone (``intel-rapl:0`` or ``intel-rapl:0:2``) with its files."""
        parts = zone.split(":")
        if len(parts) == 3:
            parent = self.root / f"{parts[0]}:{parts[1]}"
            path = parent / zone
            path.mkdir(parents=True, exist_ok=True)
            (self.root / zone).symlink_to(path)
        else:
            path = self.root / zone
            path.mkdir(parents=True, exist_ok=True)
        (path / "name").write_text(f"{name}\n")
        (path / "max_energy_range_uj").write_text(f"{max_range}\n")
        self.set(zone, energy_uj)
        return path

    def set(self, zone: str, energy_uj: int) -> None:
        """Write a zone's ``energy_uj``."""
        (self.root / zone / "energy_uj").write_text(f"{energy_uj}\n")

    def add(self, zone: str, delta_uj: int) -> None:
        """Advance a zone's counter, wrapping at its ``max_energy_range_uj``."""
        path = self.root / zone
        current = int((path / "energy_uj").read_text())
        max_range = int((path / "max_energy_range_uj").read_text())
        self.set(zone, (current + delta_uj) % max_range)

    @classmethod
    def server(cls, root: Path) -> RaplTree:
        """Two sockets, each with a DRAM subzone, plus core/uncore subzones and an mmio twin."""
        tree = cls(root)
        for socket in (0, 1):
            tree.zone(f"intel-rapl:{socket}", f"package-{socket}", energy_uj=1_000_000)
            tree.zone(f"intel-rapl:{socket}:0", "core", energy_uj=500_000)
            tree.zone(f"intel-rapl:{socket}:1", "dram", energy_uj=2_000_000)
        # The MMIO interface exposes package 0 a second time; it must not be counted.
        tree.zone("intel-rapl-mmio:0", "package-0", energy_uj=1_000_000)
        return tree


@pytest.fixture
def rapl_server(tmp_path: Path) -> RaplTree:
    """A two-socket server's powercap tree."""
    return RaplTree.server(tmp_path / "powercap")


@pytest.fixture
def rapl_tree(tmp_path: Path) -> RaplTree:
    """An empty powercap root to lay out by hand."""
    return RaplTree(tmp_path / "powercap")


@pytest.fixture
def no_rapl(tmp_path: Path) -> str:
    """A powercap root that does not exist (so tests do not depend on this machine's sysfs)."""
    return str(tmp_path / "no-powercap")
