"""What Airflow learns about greenflow through the ``apache_airflow_provider`` entry point.

Plain data, importing only the package root (itself import-free): Airflow calls :func:`get_provider_info`
while it is still loading its own configuration, so importing Airflow (or anything heavy) from here would
recurse or slow every CLI call.
"""

from __future__ import annotations

from typing import Any

from greenflow import distribution_name

_INTEGRATION = "greenflow"
_HIDDEN_ALL = ["host", "schema", "port", "login", "password", "extra"]


def _hidden(*shown: str) -> list[str]:
    return [name for name in _HIDDEN_ALL if name not in shown]


def _text(label: str, description: str, default: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": ["string", "null"]}
    if default is not None:
        schema["default"] = default
    return {"label": label, "schema": schema, "description": description}


def _choice(label: str, description: str, options: list[str], default: str) -> dict[str, Any]:
    return {
        "label": label,
        "schema": {"type": ["string", "null"], "enum": options, "default": default},
        "description": description,
    }


# One connection type per forecast provider plus one for the ledger. Credentials use Airflow's own
# Password field, which the UI masks and the task SDK registers with the secrets masker.
CONNECTION_TYPES: list[dict[str, Any]] = [
    {
        "hook-class-name": "greenflow.airflow.hooks.ledger.GreenflowLedgerHook",
        "hook-name": "greenflow ledger",
        "connection-type": "greenflow_ledger",
        "conn-fields": {
            "url": _text(
                "SQLAlchemy URL",
                "Full URL without the password, e.g. postgresql+psycopg://greenflow@db:5432/greenflow or "
                "sqlite:////var/lib/greenflow/ledger.db. Leave empty to build it from Host, Port, Schema "
                "(database) and Login. The Password field is added to it and never shown.",
            ),
            "driver": _choice(
                "Driver",
                "SQLAlchemy driver used when the URL is built from the fields.",
                ["postgresql+psycopg", "sqlite"],
                "postgresql+psycopg",
            ),
        },
        "ui-field-behaviour": {
            "hidden-fields": ["extra"],
            "relabeling": {"schema": "Database (file path for SQLite)"},
            "placeholders": {"host": "db.internal", "port": "5432", "schema": "greenflow", "login": "greenflow"},
        },
    },
    {
        "hook-class-name": "greenflow.airflow.hooks.anchor.GreenflowAnchorKeyHook",
        "hook-name": "greenflow ledger anchor key",
        "connection-type": "greenflow_anchor_key",
        "ui-field-behaviour": {
            "hidden-fields": _hidden("password"),
            "relabeling": {"password": "Ed25519 private key (PEM or base64)"},
            "placeholders": {},
        },
    },
    {
        "hook-class-name": "greenflow.airflow.hooks.intensity.UKGridHook",
        "hook-name": "greenflow: UK Carbon Intensity (ukgrid)",
        "connection-type": "greenflow_ukgrid",
        "ui-field-behaviour": {
            "hidden-fields": _hidden("host"),
            "relabeling": {"host": "API base URL"},
            "placeholders": {"host": "https://api.carbonintensity.org.uk"},
        },
    },
    {
        "hook-class-name": "greenflow.airflow.hooks.intensity.ElectricityMapsHook",
        "hook-name": "greenflow: Electricity Maps",
        "connection-type": "greenflow_electricitymaps",
        "conn-fields": {
            "emission_factor": _choice(
                "Emission factor",
                "lifecycle (Electricity Maps' default) or direct",
                ["lifecycle", "direct"],
                "lifecycle",
            ),
            "disable_estimations": {
                "label": "Disable estimations",
                "schema": {"type": ["boolean", "null"], "default": False},
                "description": "Ask the API for measured values only.",
            },
        },
        "ui-field-behaviour": {
            "hidden-fields": _hidden("host", "password"),
            "relabeling": {"host": "API base URL", "password": "API token"},
            "placeholders": {"host": "https://api.electricitymap.org"},
        },
    },
    {
        "hook-class-name": "greenflow.airflow.hooks.intensity.WattTimeHook",
        "hook-name": "greenflow: WattTime",
        "connection-type": "greenflow_watttime",
        "conn-fields": {
            "signal_type": _text("Signal type", "WattTime signal, e.g. co2_moer", "co2_moer"),
        },
        "ui-field-behaviour": {
            "hidden-fields": _hidden("host", "login", "password"),
            "relabeling": {"host": "API base URL", "login": "Username", "password": "Password"},
            "placeholders": {"host": "https://api.watttime.org"},
        },
    },
    {
        "hook-class-name": "greenflow.airflow.hooks.intensity.CarbonAwareSDKHook",
        "hook-name": "greenflow: Carbon Aware SDK Web API",
        "connection-type": "greenflow_carbon_aware_sdk",
        "conn-fields": {
            "signal": _choice("Signal", "marginal or average", ["marginal", "average"], "marginal"),
            "window_minutes": {
                "label": "Window (minutes)",
                "schema": {"type": ["integer", "null"], "default": 30},
                "description": "Forecast window the SDK averages over.",
            },
        },
        "ui-field-behaviour": {
            "hidden-fields": _hidden("host"),
            "relabeling": {"host": "Web API URL"},
            "placeholders": {"host": "http://carbon-aware-sdk:8080"},
        },
    },
    {
        "hook-class-name": "greenflow.airflow.hooks.intensity.TraceHook",
        "hook-name": "greenflow: offline trace",
        "connection-type": "greenflow_trace",
        "conn-fields": {
            "path": _text("Trace CSV", "Path of a series or snapshots CSV; empty: a shipped trace named by region."),
            "column": _text("Value column", "Column holding gCO2e/kWh (default: the file's usual one)."),
            "actuals": _text("Actuals CSV", "Separate actuals series for a snapshots trace."),
            "actuals_column": _text("Actuals column", "Column of the actuals file."),
            "signal": _choice("Signal", "What the trace holds", ["average", "marginal"], "average"),
        },
        "ui-field-behaviour": {"hidden-fields": _HIDDEN_ALL, "relabeling": {}, "placeholders": {}},
    },
]

CONFIG: dict[str, Any] = {
    "greenflow": {
        "description": "greenflow: carbon-aware GPU tasks, the provenance ledger and carbon budgets.",
        "options": {
            "ledger_url": {
                "description": "SQLAlchemy URL of the ledger used by tasks that name no ledger connection. "
                "Empty: $GREENFLOW_LEDGER_URL, else greenflow's default SQLite file. Use PostgreSQL when "
                "several workers share the ledger.\n",
                "version_added": None,
                "type": "string",
                "example": "postgresql+psycopg://greenflow@db:5432/greenflow",
                "default": "",
            },
            "ledger_conn_id": {
                "description": "Connection (type greenflow_ledger) used by tasks that name none. Takes "
                "precedence over ledger_url when set.\n",
                "version_added": None,
                "type": "string",
                "example": "greenflow_ledger_default",
                "default": "",
            },
            "on_budget_exceeded": {
                "description": "What a task does when its budget cannot cover its estimate: skip (record "
                "skipped_budget and mark the task skipped) or fail (record skipped_budget and fail).\n",
                "version_added": None,
                "type": "string",
                "example": "fail",
                "default": "skip",
            },
            "refresh_interval": {
                "description": "How often a waiting task re-reads the forecast when its provider publishes "
                "on no fixed cadence (offline traces), in the task's clock.\n",
                "version_added": None,
                "type": "string",
                "example": "15m",
                "default": "30m",
            },
            "budget_recheck_interval": {
                "description": "How often a CarbonBudgetSensor waiting for a budget re-reads it before the "
                "next period starts (reservations released early can free it).\n",
                "version_added": None,
                "type": "string",
                "example": "1m",
                "default": "5m",
            },
        },
    }
}


def get_provider_info() -> dict[str, Any]:
    """The provider metadata Airflow's ProvidersManager reads (``package-name`` is the distribution).

    Airflow refuses a provider whose ``package-name`` differs from the distribution that declares it,
    so it is the installed distribution's name (``greenflow-carbon``, or an older install's name).
    """
    return {
        "package-name": distribution_name(),
        "name": "greenflow",
        "description": "Carbon-aware, accountable GPU work: green windows, deferral, metering, a provenance "
        "ledger and carbon budgets.\n",
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "external-doc-url": "https://github.com/greenflow/greenflow/blob/main/docs/airflow.md",
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "greenflow.airflow.operators.carbon_aware",
                    "greenflow.airflow.operators.bash",
                    "greenflow.airflow.operators.gate",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": ["greenflow.airflow.sensors.green_window", "greenflow.airflow.sensors.budget"],
            }
        ],
        "hooks": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "greenflow.airflow.hooks.ledger",
                    "greenflow.airflow.hooks.intensity",
                    "greenflow.airflow.hooks.anchor",
                ],
            }
        ],
        "triggers": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": ["greenflow.airflow.triggers.window", "greenflow.airflow.triggers.budget"],
            }
        ],
        "extra-links": ["greenflow.airflow.links.ledger.GreenflowLedgerLink"],
        "connection-types": CONNECTION_TYPES,
        "config": CONFIG,
        "task-decorators": [
            {"class-name": "greenflow.airflow.decorators.carbon_aware.carbon_aware_task", "name": "carbon_aware"}
        ],
    }
