"""Forecast-provider connections: base URLs and credentials for each intensity provider.

Each connection type maps to one greenflow provider. Tokens and passwords are handed to the provider
wrapped in :class:`~greenflow.intensity.providers.http.Secret`, so no repr, log line or ledger entry can
show them; Airflow's task SDK also registers them with its secrets masker when it reads the connection.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.sdk import BaseHook

from greenflow.airflow.hooks.connection_fields import ConnectionLike, blank_to_none, extra_field
from greenflow.airflow.hooks.lookup import aget_connection, get_connection
from greenflow.errors import ConfigError
from greenflow.intensity.providers.http import Secret


class IntensityProviderHook(BaseHook):
    """Base of the per-provider hooks: turns a connection into greenflow provider options."""

    conn_name_attr = "provider_conn_id"
    provider: ClassVar[str]
    conn_type: ClassVar[str]
    default_conn_name: ClassVar[str]

    def __init__(self, provider_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.provider_conn_id = provider_conn_id or self.default_conn_name

    @classmethod
    def options_from(cls, conn: ConnectionLike) -> dict[str, Any]:
        """Provider options (``get_provider(cls.provider, **options)``) from a connection of this type."""
        options: dict[str, Any] = {}
        base_url = blank_to_none(conn.host)
        if base_url:
            options["base_url"] = base_url
        return options

    def provider_options(self) -> dict[str, Any]:
        """Options read from this hook's connection."""
        return self.options_from(get_connection(self.provider_conn_id))

    async def aprovider_options(self) -> dict[str, Any]:
        """:meth:`provider_options` from an event loop."""
        return self.options_from(await aget_connection(self.provider_conn_id))

    def get_conn(self) -> dict[str, Any]:
        """The provider options (a provider is built per task from these plus the DAG's options)."""
        return self.provider_options()


class UKGridHook(IntensityProviderHook):
    """UK National Energy System Operator Carbon Intensity API (no credentials; base URL only)."""

    provider = "ukgrid"
    conn_type = "greenflow_ukgrid"
    default_conn_name = "greenflow_ukgrid_default"
    hook_name = "greenflow: UK Carbon Intensity (ukgrid)"


class ElectricityMapsHook(IntensityProviderHook):
    """Electricity Maps: the API token in the Password field."""

    provider = "electricitymaps"
    conn_type = "greenflow_electricitymaps"
    default_conn_name = "greenflow_electricitymaps_default"
    hook_name = "greenflow: Electricity Maps"

    @classmethod
    def options_from(cls, conn: ConnectionLike) -> dict[str, Any]:
        """Base URL, token (as a Secret), emission factor and estimation setting."""
        options = super().options_from(conn)
        token = blank_to_none(conn.password)
        if token:
            options["token"] = Secret(token)
        factor = extra_field(conn, "emission_factor")
        if factor:
            options["emission_factor"] = str(factor)
        disable = extra_field(conn, "disable_estimations")
        if disable is not None:
            options["disable_estimations"] = disable is True or str(disable).lower() in ("true", "1", "yes")
        return options


class WattTimeHook(IntensityProviderHook):
    """WattTime: username in Login, password in Password."""

    provider = "watttime"
    conn_type = "greenflow_watttime"
    default_conn_name = "greenflow_watttime_default"
    hook_name = "greenflow: WattTime"

    @classmethod
    def options_from(cls, conn: ConnectionLike) -> dict[str, Any]:
        """Base URL, username, password (as a Secret) and signal type."""
        options = super().options_from(conn)
        if blank_to_none(conn.login):
            options["username"] = blank_to_none(conn.login)
        password = blank_to_none(conn.password)
        if password:
            options["password"] = Secret(password)
        signal_type = extra_field(conn, "signal_type")
        if signal_type:
            options["signal_type"] = str(signal_type)
        return options


class CarbonAwareSDKHook(IntensityProviderHook):
    """A self-hosted Carbon Aware SDK Web API: its URL in Host."""

    provider = "carbon-aware-sdk"
    conn_type = "greenflow_carbon_aware_sdk"
    default_conn_name = "greenflow_carbon_aware_sdk_default"
    hook_name = "greenflow: Carbon Aware SDK Web API"

    @classmethod
    def options_from(cls, conn: ConnectionLike) -> dict[str, Any]:
        """Base URL, signal and window."""
        options = super().options_from(conn)
        signal = extra_field(conn, "signal")
        if signal:
            options["signal"] = str(signal)
        window = extra_field(conn, "window_minutes")
        if window is not None:
            try:
                options["window_minutes"] = int(window)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"connection {conn.conn_id!r}: window_minutes={window!r} is not a whole number",
                    fix="give minutes, e.g. 30",
                ) from None
        return options


class TraceHook(IntensityProviderHook):
    """An offline trace CSV (no credentials)."""

    provider = "trace"
    conn_type = "greenflow_trace"
    default_conn_name = "greenflow_trace_default"
    hook_name = "greenflow: offline trace"

    @classmethod
    def options_from(cls, conn: ConnectionLike) -> dict[str, Any]:
        """Path, columns and signal of the trace."""
        options: dict[str, Any] = {}
        for name in ("path", "column", "actuals", "actuals_column", "signal"):
            value = extra_field(conn, name)
            if value:
                options[name] = str(value)
        return options


HOOKS: tuple[type[IntensityProviderHook], ...] = (
    UKGridHook,
    ElectricityMapsHook,
    WattTimeHook,
    CarbonAwareSDKHook,
    TraceHook,
)
BY_CONN_TYPE: dict[str, type[IntensityProviderHook]] = {hook.conn_type: hook for hook in HOOKS}
BY_PROVIDER: dict[str, type[IntensityProviderHook]] = {hook.provider: hook for hook in HOOKS}


def hook_for_connection(conn: ConnectionLike, provider: str) -> type[IntensityProviderHook]:
    """The hook class for ``conn``, checking that its type serves ``provider``."""
    hook = BY_CONN_TYPE.get(conn.conn_type or "")
    if hook is None or hook.provider != provider:
        wanted = BY_PROVIDER[provider].conn_type if provider in BY_PROVIDER else "a greenflow_* type"
        raise ConfigError(
            f"connection {conn.conn_id!r} has type {conn.conn_type!r}, which does not serve provider {provider!r}",
            fix=f"use a connection of type {wanted}, or name the provider that connection is for",
        )
    return hook
