"""The one seam between greenflow and NVML (``nvidia-ml-py``, import name ``pynvml``).

Every NVML call the meter makes goes through :class:`NvmlBackend`, which takes the ``pynvml`` module (or a
stand-in with the same functions and the same ``NVMLError_*`` classes) as a constructor argument. Tests
pass autospec fakes of the real functions; production passes nothing and gets the real module.

``nvmlInit``/``nvmlShutdown`` are reference counted here: however many meters share a backend, NVML is
initialised once and shut down when the last one is closed. :func:`default_backend` is the process-wide
instance meters use unless told otherwise.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from typing import Any

Handle = Any  # a ctypes device handle from pynvml; opaque to greenflow


class NvmlUnavailable(Exception):
    """NVML cannot be used on this machine; ``reason`` says why in words a user can act on."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class NvmlBackend:
    """Thin wrapper over the pynvml functions greenflow uses, with a reference-counted init.

    ``module`` is ``pynvml`` itself or a stand-in exposing the same names; ``None`` imports ``pynvml``
    on first :meth:`acquire`. Methods raise the module's own ``NVMLError`` subclasses; callers tell
    them apart with :meth:`is_not_supported` and :meth:`describe`.
    """

    def __init__(self, module: Any | None = None) -> None:
        self._module = module
        self._lock = threading.Lock()
        self._users = 0
        self._value_attributes: dict[int, str] | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def nvml(self) -> Any:
        """The pynvml module (or stand-in) in use; importing it on first access."""
        if self._module is None:
            try:
                self._module = importlib.import_module("pynvml")
            except ImportError:
                raise NvmlUnavailable(
                    "nvidia-ml-py is not installed (pip install 'greenflow-carbon[nvidia]'), so GPUs cannot be read"
                ) from None
        return self._module

    @property
    def users(self) -> int:
        """How many holders currently keep NVML initialised."""
        return self._users

    def acquire(self) -> None:
        """Initialise NVML for one more user (only the first calls ``nvmlInit``).

        Raises :class:`NvmlUnavailable` with a reason when NVML cannot start (no library, no driver).
        """
        with self._lock:
            if self._users == 0:
                nvml = self.nvml
                try:
                    nvml.nvmlInit()
                except nvml.NVMLError as exc:
                    raise NvmlUnavailable(self._init_failure(exc)) from exc
            self._users += 1

    def release(self) -> None:
        """Give back one :meth:`acquire`; the last one calls ``nvmlShutdown``."""
        with self._lock:
            if self._users == 0:
                return
            self._users -= 1
            if self._users == 0:
                # A failed shutdown changes nothing: the process is done with NVML either way.
                with contextlib.suppress(self.nvml.NVMLError):
                    self.nvml.nvmlShutdown()

    # -- errors ----------------------------------------------------------------------------------
    def is_error(self, exc: BaseException) -> bool:
        """True for any NVML error."""
        return isinstance(exc, self.nvml.NVMLError)

    def is_not_supported(self, exc: BaseException) -> bool:
        """True when the device does not support the call (as opposed to a failure worth reporting)."""
        return isinstance(exc, self.nvml.NVMLError_NotSupported | self.nvml.NVMLError_FunctionNotFound)

    def describe(self, exc: BaseException) -> str:
        """``"Not Supported (NVMLError_NotSupported)"``: the message and the class a user can search for."""
        return f"{exc} ({type(exc).__name__})"

    def _init_failure(self, exc: BaseException) -> str:
        nvml = self.nvml
        if isinstance(exc, nvml.NVMLError_LibraryNotFound):
            return "no NVIDIA GPU: the NVML library (libnvidia-ml.so.1) is not found (NVMLError_LibraryNotFound)"
        if isinstance(exc, nvml.NVMLError_DriverNotLoaded):
            return "no NVIDIA GPU: the NVIDIA driver is not loaded (NVMLError_DriverNotLoaded)"
        if isinstance(exc, nvml.NVMLError_NoPermission):
            return "NVML refused access to the GPUs (NVMLError_NoPermission): check /dev/nvidia* permissions"
        return f"NVML failed to initialise: {self.describe(exc)}"

    # -- devices ---------------------------------------------------------------------------------
    def device_count(self) -> int:
        """Number of physical GPUs NVML sees."""
        return int(self.nvml.nvmlDeviceGetCount())

    def handle_by_index(self, index: int) -> Handle:
        """Handle of the GPU at NVML ``index`` (PCI bus order)."""
        return self.nvml.nvmlDeviceGetHandleByIndex(index)

    def handle_by_uuid(self, uuid: str) -> Handle:
        """Handle of a GPU (``GPU-…``) or MIG device (``MIG-…``) by its full UUID."""
        return self.nvml.nvmlDeviceGetHandleByUUID(uuid)

    def uuid(self, handle: Handle) -> str:
        """The device's UUID (``GPU-…`` or ``MIG-…``)."""
        return _text(self.nvml.nvmlDeviceGetUUID(handle))

    def name(self, handle: Handle) -> str:
        """The product name, e.g. ``NVIDIA A100-SXM4-40GB``."""
        return _text(self.nvml.nvmlDeviceGetName(handle))

    def parent_of_mig(self, mig_handle: Handle) -> Handle:
        """The physical GPU a MIG device lives on."""
        return self.nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig_handle)

    def mig_enabled(self, handle: Handle) -> bool:
        """True when the GPU is in MIG mode (its energy is then shared between tenants)."""
        current, _pending = self.nvml.nvmlDeviceGetMigMode(handle)
        return bool(current == self.nvml.NVML_DEVICE_MIG_ENABLE)

    # -- readings --------------------------------------------------------------------------------
    def total_energy_mj(self, handle: Handle) -> int:
        """Energy used since the driver was loaded, in millijoules (Volta and newer)."""
        return int(self.nvml.nvmlDeviceGetTotalEnergyConsumption(handle))

    def instant_power_mw(self, handle: Handle) -> float:
        """Instant power in milliwatts from the ``NVML_FI_DEV_POWER_INSTANT`` field.

        Preferred over :meth:`average_power_mw` because on Ampere and newer ``nvmlDeviceGetPowerUsage``
        returns a one-second moving average, which smears the trace the sampler integrates. A field the
        device does not support comes back as a per-field return code, raised here as the matching
        ``NVMLError`` subclass.
        """
        nvml = self.nvml
        value = nvml.nvmlDeviceGetFieldValues(handle, [nvml.NVML_FI_DEV_POWER_INSTANT])[0]
        if value.nvmlReturn != nvml.NVML_SUCCESS:
            raise nvml.NVMLError(value.nvmlReturn)
        if self._value_attributes is None:
            self._value_attributes = {
                getattr(nvml, constant): attribute
                for constant, attribute in _VALUE_ATTRIBUTES.items()
                if hasattr(nvml, constant)
            }
        # Power fields are documented as unsigned int milliwatts; reading by valueType guards a change.
        return float(getattr(value.value, self._value_attributes.get(value.valueType, "uiVal")))

    def average_power_mw(self, handle: Handle) -> float:
        """``nvmlDeviceGetPowerUsage`` in milliwatts (instant before Ampere, a 1 s average after)."""
        return float(self.nvml.nvmlDeviceGetPowerUsage(handle))

    def power_limit_mw(self, handle: Handle) -> float:
        """The enforced power limit in milliwatts (the basis of the GPU estimate)."""
        return float(self.nvml.nvmlDeviceGetEnforcedPowerLimit(handle))

    def utilization(self, handle: Handle) -> float:
        """Share of the last sample period in which a kernel ran, in [0, 1]."""
        return float(self.nvml.nvmlDeviceGetUtilizationRates(handle).gpu) / 100.0


_DEFAULT: NvmlBackend | None = None
_DEFAULT_LOCK = threading.Lock()


def default_backend() -> NvmlBackend:
    """The process-wide backend over the real ``pynvml``, shared so NVML is initialised once."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = NvmlBackend()
        return _DEFAULT


def _text(value: str | bytes) -> str:
    # nvidia-ml-py decodes strings, but older releases returned bytes.
    return value.decode() if isinstance(value, bytes) else value


_VALUE_ATTRIBUTES = {
    "NVML_VALUE_TYPE_DOUBLE": "dVal",
    "NVML_VALUE_TYPE_UNSIGNED_INT": "uiVal",
    "NVML_VALUE_TYPE_UNSIGNED_LONG": "ulVal",
    "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG": "ullVal",
    "NVML_VALUE_TYPE_SIGNED_LONG_LONG": "sllVal",
    "NVML_VALUE_TYPE_SIGNED_INT": "siVal",
}
