"""Which GPUs a job uses: ``CUDA_VISIBLE_DEVICES`` (or an explicit list) resolved to physical GPUs.

``CUDA_VISIBLE_DEVICES`` entries are indices (``0``), GPU UUIDs or unique prefixes of them (``GPU-8c1b…``),
and MIG devices, in the current form (``MIG-<uuid>``) or the CUDA 11.0-11.x form
(``MIG-GPU-<gpu uuid>/<gpu instance>/<compute instance>``). The variable follows CUDA's rules: unset means
every GPU, empty means none, and an entry that is not a valid device hides it and every entry after it
(so ``-1`` or ``none`` hide all GPUs). The meter reads energy per *physical* GPU, so MIG entries resolve
to their parent GPU and are charged a declared fraction of it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from greenflow.errors import InvalidInput
from greenflow.metering.nvml import Handle, NvmlBackend

SelectorKind = Literal["index", "uuid", "mig"]

_INDEX = re.compile(r"^\d+$")
_GPU_UUID = re.compile(r"^GPU-[0-9a-fA-F-]+$")
_MIG_LEGACY = re.compile(r"^MIG-(GPU-[0-9a-fA-F-]+)/\d+/\d+$")
_MIG = re.compile(r"^MIG-[0-9a-fA-F-]+$")


@dataclass(frozen=True)
class GpuSelector:
    """One entry of a GPU list: an NVML index, a GPU UUID (or prefix), or a MIG device id."""

    kind: SelectorKind
    value: str


@dataclass(frozen=True)
class GpuSelection:
    """The parsed GPU list. ``selectors`` is ``None`` for "every GPU" and ``()`` for "no GPU"."""

    selectors: tuple[GpuSelector, ...] | None
    source: str
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class SelectedGpu:
    """A physical GPU the job uses; ``mig_uuids`` lists the MIG slices selected on it (empty: whole GPU)."""

    index: int
    uuid: str
    name: str
    handle: Handle
    mig_uuids: tuple[str, ...] = ()


def parse_selector(entry: str) -> GpuSelector | None:
    """Classify one entry; ``None`` when CUDA would not accept it."""
    text = entry.strip()
    if _INDEX.match(text):
        return GpuSelector("index", str(int(text)))
    if _GPU_UUID.match(text):
        return GpuSelector("uuid", text)
    if _MIG_LEGACY.match(text) or _MIG.match(text):
        return GpuSelector("mig", text)
    return None


def parse_cuda_visible_devices(value: str | None) -> GpuSelection:
    """Parse ``CUDA_VISIBLE_DEVICES`` by CUDA's rules (see the module docstring)."""
    source = "CUDA_VISIBLE_DEVICES"
    if value is None:
        return GpuSelection(None, "all GPUs (CUDA_VISIBLE_DEVICES unset)")
    if not value.strip():
        return GpuSelection((), f"{source} is empty")
    selectors: list[GpuSelector] = []
    warnings: list[str] = []
    for entry in value.split(","):
        selector = parse_selector(entry)
        if selector is None:
            warnings.append(
                f"{source}={value!r}: entry {entry.strip()!r} is not a GPU index, GPU- UUID or MIG- id; "
                "like CUDA, greenflow ignores it and every entry after it"
            )
            break
        selectors.append(selector)
    return GpuSelection(tuple(selectors), f"{source}={value!r}", tuple(warnings))


def select_gpus(gpu_indices: Sequence[int | str] | None, environ: Mapping[str, str]) -> GpuSelection:
    """The GPU list from ``gpu_indices`` (NVML indices or ids), else from ``CUDA_VISIBLE_DEVICES``."""
    if gpu_indices is None:
        return parse_cuda_visible_devices(environ.get("CUDA_VISIBLE_DEVICES"))
    selectors: list[GpuSelector] = []
    for item in gpu_indices:
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise InvalidInput(f"gpu_indices entry {item!r} is not a GPU", fix="give NVML indices like [0, 1]")
        selector = parse_selector(str(item))
        if selector is None:
            raise InvalidInput(
                f"gpu_indices entry {item!r} is not a GPU index, GPU- UUID or MIG- id",
                fix="give NVML indices like [0, 1] or UUIDs like 'GPU-8c1b…'",
            )
        selectors.append(selector)
    return GpuSelection(tuple(selectors), f"gpu_indices={list(gpu_indices)!r}")


def resolve_gpus(
    selection: GpuSelection, backend: NvmlBackend, environ: Mapping[str, str]
) -> tuple[tuple[SelectedGpu, ...], tuple[str, ...]]:
    """Map a selection to physical GPUs through NVML; returns the GPUs and warnings.

    Entries that match no GPU end the list, as in CUDA. Indices are NVML's (PCI bus order), which is
    CUDA's order only with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``; a warning says so when it matters.
    """
    count = backend.device_count()
    physical = [(i, backend.handle_by_index(i)) for i in range(count)]
    uuids = [backend.uuid(handle) for _, handle in physical]
    warnings = list(selection.warnings)
    if selection.selectors is None:
        return tuple(_whole(backend, i, h, u) for (i, h), u in zip(physical, uuids, strict=True)), tuple(warnings)

    order: list[int] = []
    migs: dict[int, list[str]] = {}
    whole: set[int] = set()
    for selector in selection.selectors:
        index, problem = _locate(selector, backend, uuids)
        if index is None:
            warnings.append(f"{selection.source}: {problem}; it and every entry after it are not metered")
            break
        if index not in order:
            order.append(index)
        if selector.kind == "mig":
            migs.setdefault(index, []).append(selector.value)
        elif index in whole:
            warnings.append(f"{selection.source}: GPU {index} is listed twice; metered once")
        else:
            whole.add(index)

    if (
        selection.source.startswith("CUDA_VISIBLE_DEVICES")
        and count > 1
        and any(s.kind == "index" for s in selection.selectors)
        and environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID"
    ):
        warnings.append(
            "CUDA_VISIBLE_DEVICES gives indices but CUDA_DEVICE_ORDER is not PCI_BUS_ID: CUDA may number the "
            "GPUs differently from NVML; set CUDA_DEVICE_ORDER=PCI_BUS_ID or use GPU- UUIDs"
        )

    selected: list[SelectedGpu] = []
    for index in order:
        handle = physical[index][1]
        if index in whole:
            if index in migs:
                warnings.append(f"GPU {index} is selected whole and as MIG slices: metered as the whole GPU")
            selected.append(_whole(backend, index, handle, uuids[index]))
        else:
            selected.append(
                SelectedGpu(index, uuids[index], backend.name(handle), handle, mig_uuids=tuple(migs[index]))
            )
    return tuple(selected), tuple(warnings)


def _whole(backend: NvmlBackend, index: int, handle: Handle, uuid: str) -> SelectedGpu:
    return SelectedGpu(index=index, uuid=uuid, name=backend.name(handle), handle=handle)


def _locate(selector: GpuSelector, backend: NvmlBackend, uuids: list[str]) -> tuple[int | None, str]:
    """NVML index of the physical GPU behind ``selector``, or ``None`` and what went wrong."""
    if selector.kind == "index":
        index = int(selector.value)
        if index < len(uuids):
            return index, ""
        return None, f"GPU index {index} does not exist (NVML sees {len(uuids)} GPU(s))"
    if selector.kind == "uuid":
        return _by_uuid_prefix(selector.value, uuids)
    legacy = _MIG_LEGACY.match(selector.value)
    if legacy:
        return _by_uuid_prefix(legacy.group(1), uuids)
    try:
        parent = backend.parent_of_mig(backend.handle_by_uuid(selector.value))
        return _by_uuid_prefix(backend.uuid(parent), uuids)
    except Exception as exc:
        if not backend.is_error(exc):
            raise
        return None, f"MIG device {selector.value} not found by NVML: {backend.describe(exc)}"


def _by_uuid_prefix(wanted: str, uuids: list[str]) -> tuple[int | None, str]:
    # CUDA accepts any unique prefix of a GPU UUID; NVML only full ones, so match here.
    matches = [i for i, uuid in enumerate(uuids) if uuid.lower().startswith(wanted.lower())]
    if len(matches) == 1:
        return matches[0], ""
    if not matches:
        return None, f"no GPU has a UUID starting with {wanted}"
    return None, f"{wanted} matches {len(matches)} GPUs; give more of the UUID"
