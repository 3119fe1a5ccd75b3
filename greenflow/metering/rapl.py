"""CPU package and DRAM energy from Linux RAPL through the powercap sysfs tree.

Layout (``/sys/class/powercap`` by default; containers often mount it elsewhere, hence
``GREENFLOW_RAPL_ROOT``)::

    intel-rapl:0/name                 "package-0"
    intel-rapl:0/energy_uj            cumulative microjoules, wraps at max_energy_range_uj
    intel-rapl:0/max_energy_range_uj
    intel-rapl:0/intel-rapl:0:2/name  "dram"   (servers; laptops usually have no dram domain)

The root also lists every subzone flattened (``intel-rapl:0:0`` …) and, on client CPUs, a ``psys`` zone
that already contains the package; both are skipped so nothing is counted twice. AMD Zen CPUs appear
under the same ``intel-rapl`` names. Since Linux 5.10 ``energy_uj`` is readable by root only
(CVE-2020-8694); permission denied is reported as the reason, never hidden.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

DEFAULT_RAPL_ROOT = "/sys/class/powercap"
ENV_RAPL_ROOT = "GREENFLOW_RAPL_ROOT"

_ZONE = re.compile(r"^intel-rapl:\d+$")
_SUBZONE = re.compile(r"^intel-rapl:\d+:\d+$")


class RaplUnavailable(Exception):
    """RAPL cannot be read; ``reason`` says why and what to do."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class RaplReader:
    """The one place RAPL files are read. Tests replace it to simulate what root cannot (EACCES)."""

    def read_text(self, path: Path) -> str:
        """The stripped content of a sysfs file."""
        return path.read_text().strip()


@dataclass(frozen=True)
class RaplDomain:
    """One RAPL zone: a CPU package or the DRAM of a package."""

    path: Path
    component: Literal["cpu", "dram"]
    label: str  # "package-0", "package-0/dram"
    max_energy_range_uj: int

    @functools.cached_property
    def energy_path(self) -> Path:
        """The ``energy_uj`` file (built once: the sampler reads it every second)."""
        return self.path / "energy_uj"


class RaplCounter:
    """Accumulates one domain's ``energy_uj`` into a total that only grows, correcting wraparound.

    Correct only if it is read at least once per wrap period (minutes at full load): the sampler polls
    it every second while a window is open.
    """

    def __init__(self, domain: RaplDomain, reader: RaplReader) -> None:
        self.domain = domain
        self.reader = reader
        self.wraps = 0
        self._last_uj: int | None = None
        self._total_uj = 0
        self._lock = threading.Lock()

    def read_joules(self) -> float:
        """Energy counted since the first read, in joules. Raises :class:`RaplUnavailable` on failure."""
        raw = read_energy_uj(self.domain, self.reader)
        with self._lock:
            if self._last_uj is not None:
                if raw >= self._last_uj:
                    self._total_uj += raw - self._last_uj
                else:
                    self._total_uj += self.domain.max_energy_range_uj - self._last_uj + raw
                    self.wraps += 1
            self._last_uj = raw
            return self._total_uj / 1e6


@dataclass(frozen=True)
class RaplSetup:
    """What RAPL offers here: counters per component, or the reason there are none."""

    root: Path
    cpu: tuple[RaplCounter, ...]
    dram: tuple[RaplCounter, ...]
    cpu_reason: str | None
    dram_reason: str | None


def rapl_root(explicit: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> Path:
    """The powercap root: the argument, else ``GREENFLOW_RAPL_ROOT``, else ``/sys/class/powercap``."""
    if explicit is not None:
        return Path(explicit)
    return Path(environ.get(ENV_RAPL_ROOT) or DEFAULT_RAPL_ROOT)


def read_energy_uj(domain: RaplDomain, reader: RaplReader) -> int:
    """One raw ``energy_uj`` read; failures become :class:`RaplUnavailable` with a useful reason."""
    path = domain.energy_path
    try:
        return int(reader.read_text(path))
    except PermissionError:
        raise RaplUnavailable(
            f"RAPL not readable: permission denied on {path} (energy_uj is root-only since Linux 5.10; "
            "run as root or grant read access, e.g. a udev rule or chmod a+r)"
        ) from None
    except (OSError, ValueError) as exc:
        raise RaplUnavailable(f"RAPL not readable: {path}: {exc}") from None


def discover(root: Path, reader: RaplReader) -> list[RaplDomain]:
    """The package and DRAM domains under ``root``; raises :class:`RaplUnavailable` when there are none."""
    if not root.is_dir():
        raise RaplUnavailable(
            f"no RAPL: {root} does not exist (not Linux, a VM without RAPL, or a container without "
            f"powercap; set {ENV_RAPL_ROOT} if it is mounted elsewhere)"
        )
    domains: list[RaplDomain] = []
    seen: set[Path] = set()
    for zone in sorted(p for p in root.iterdir() if _ZONE.match(p.name)):
        name = _zone_name(zone, reader)
        if name.startswith("package"):
            _add(domains, seen, zone, "cpu", name, reader)
            for sub in sorted(p for p in zone.iterdir() if _SUBZONE.match(p.name)):
                if _zone_name(sub, reader) == "dram":
                    _add(domains, seen, sub, "dram", f"{name}/dram", reader)
        elif name == "dram":  # some platforms expose DRAM as a top-level zone
            _add(domains, seen, zone, "dram", f"{zone.name}/dram", reader)
        # "psys" (whole platform, includes the package) and anything unknown are skipped on purpose.
    if not domains:
        raise RaplUnavailable(f"no RAPL package domain under {root}")
    return domains


def open_rapl(root: Path, reader: RaplReader | None = None) -> RaplSetup:
    """Find the domains and read each once, so a permission problem is known before any window opens."""
    reader = reader or RaplReader()
    try:
        domains = discover(root, reader)
    except RaplUnavailable as exc:
        return RaplSetup(root, (), (), exc.reason, exc.reason)
    counters: dict[str, list[RaplCounter]] = {"cpu": [], "dram": []}
    reasons: dict[str, str | None] = {"cpu": None, "dram": None}
    for domain in domains:
        counter = RaplCounter(domain, reader)
        try:
            counter.read_joules()
        except RaplUnavailable as exc:
            reasons[domain.component] = reasons[domain.component] or exc.reason
            continue
        counters[domain.component].append(counter)
    for component in ("cpu", "dram"):
        if reasons[component] and counters[component]:
            # Some sockets readable and others not would under-count silently: use none of them.
            counters[component] = []
        if not counters[component] and reasons[component] is None:
            reasons[component] = f"no RAPL {'package' if component == 'cpu' else 'dram'} domain under {root}"
    return RaplSetup(root, tuple(counters["cpu"]), tuple(counters["dram"]), reasons["cpu"], reasons["dram"])


def _zone_name(zone: Path, reader: RaplReader) -> str:
    try:
        return reader.read_text(zone / "name")
    except OSError:
        return ""


def _add(
    domains: list[RaplDomain],
    seen: set[Path],
    zone: Path,
    component: Literal["cpu", "dram"],
    label: str,
    reader: RaplReader,
) -> None:
    real = zone.resolve()
    if real in seen:
        return
    seen.add(real)
    try:
        max_range = int(reader.read_text(zone / "max_energy_range_uj"))
    except PermissionError:
        raise RaplUnavailable(f"RAPL not readable: permission denied on {zone / 'max_energy_range_uj'}") from None
    except (OSError, ValueError) as exc:
        raise RaplUnavailable(f"RAPL zone {zone} has no usable max_energy_range_uj: {exc}") from None
    domains.append(RaplDomain(zone, component, label, max_range))
