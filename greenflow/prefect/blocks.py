"""Prefect blocks: forecast-provider credentials and the ledger's URL, kept secret in Prefect's API.

Both are registered when Prefect loads the ``greenflow`` collection (the ``prefect.collections`` entry
point imports :mod:`greenflow.prefect`), so the server and workers know them without
``prefect block register``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, SecretStr

from greenflow.intensity.providers.http import Secret
from greenflow.ledger import Ledger
from greenflow.ledger.registry import shared_ledger

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# Where docs/prefect.md is published (the block pages in Prefect's UI link to it).
DOCS_URL = HttpUrl("https://github.com/greenflow/greenflow/blob/main/docs/prefect.md")


class GreenflowCredentials(Block):
    """Tokens greenflow uses to read carbon-intensity forecasts (Electricity Maps, WattTime).

    The values are secrets: Prefect's API and UI show them masked, and greenflow hands them to the
    provider wrapped so that no log line, ledger entry or artifact can contain them. Providers that
    need no credentials (UK Carbon Intensity, a self-hosted Carbon Aware SDK, offline traces) ignore
    this block.

    Examples:
        Load saved credentials and use them for a carbon-aware task:
        ```python
        from greenflow.prefect import GreenflowCredentials, carbon_aware

        credentials = GreenflowCredentials.load("BLOCK_NAME")

        @carbon_aware(region="DE", provider="electricitymaps", credentials=credentials)
        def train(): ...
        ```
    """

    _block_type_name: ClassVar[str] = "Greenflow Credentials"
    _block_type_slug: ClassVar[str] = "greenflow-credentials"
    _documentation_url: ClassVar[HttpUrl] = DOCS_URL

    electricitymaps_token: SecretStr | None = Field(
        default=None,
        title="Electricity Maps token",
        description="Electricity Maps API token, sent as the auth-token header.",
    )
    watttime_username: str | None = Field(default=None, title="WattTime username", description="WattTime account name.")
    watttime_password: SecretStr | None = Field(
        default=None, title="WattTime password", description="WattTime account password."
    )

    def provider_options(self, provider: str) -> dict[str, Any]:
        """The options that authenticate ``provider``; secrets wrapped in greenflow's ``Secret``."""
        if provider == "electricitymaps" and self.electricitymaps_token is not None:
            return {"token": Secret(self.electricitymaps_token.get_secret_value())}
        if provider == "watttime":
            options: dict[str, Any] = {}
            if self.watttime_username:
                options["username"] = self.watttime_username
            if self.watttime_password is not None:
                options["password"] = Secret(self.watttime_password.get_secret_value())
            return options
        return {}


class GreenflowLedger(Block):
    """Where greenflow's provenance ledger and carbon budgets live (a SQLAlchemy database URL).

    Share one PostgreSQL URL between every worker so that budgets hold across them; the URL is a
    secret because it usually carries a password. Without this block greenflow uses
    ``GREENFLOW_LEDGER_URL``, else a SQLite file in the user's data directory.

    Examples:
        Load the ledger and read a budget:
        ```python
        from greenflow.prefect import GreenflowLedger

        ledger_block = GreenflowLedger.load("BLOCK_NAME")
        print(ledger_block.get_ledger().budgets.status("gpu-monthly").remaining)
        ```
    """

    _block_type_name: ClassVar[str] = "Greenflow Ledger"
    _block_type_slug: ClassVar[str] = "greenflow-ledger"
    _documentation_url: ClassVar[HttpUrl] = DOCS_URL

    url: SecretStr = Field(
        default=...,
        title="Ledger URL",
        description="SQLAlchemy URL of the ledger database, e.g. postgresql+psycopg://user:pass@host/greenflow.",
        examples=["postgresql+psycopg://greenflow:***@db.internal:5432/greenflow"],
    )

    anchor_key: SecretStr | None = Field(
        default=None,
        title="Anchor key",
        description="Ed25519 private key (PEM or base64 of its 32 raw bytes) that signs ledger anchors; "
        "make one with `greenflow ledger keygen`. Optional: only the anchoring flow needs it.",
    )

    def anchor_private_key(self) -> Ed25519PrivateKey:
        """The private key that signs anchors of this ledger (never log it)."""
        from greenflow.errors import ConfigError
        from greenflow.ledger.anchor import load_private_key

        if self.anchor_key is None:
            raise ConfigError(
                "this Greenflow Ledger block has no anchor key",
                fix="paste the private key from `greenflow ledger keygen` into its Anchor key field",
            )
        return load_private_key(self.anchor_key.get_secret_value(), "the Greenflow Ledger block's anchor key")

    def get_ledger(self) -> Ledger:
        """The ledger at this URL (one connection pool per URL per process: the core's registry)."""
        return shared_ledger(self.url.get_secret_value())
