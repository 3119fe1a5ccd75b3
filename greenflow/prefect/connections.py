"""What a carbon-aware call connects to: the ledger and the forecast provider, from blocks or the environment.

Ledgers are opened once per URL per process (the core's :mod:`greenflow.ledger.registry`): a worker
runs many attempts, and each new engine would cost a connection pool and a schema check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from prefect.blocks.core import Block

from greenflow.errors import InvalidInput
from greenflow.intensity.providers.base import IntensityProvider, get_provider
from greenflow.ledger import Ledger
from greenflow.ledger.registry import shared_ledger
from greenflow.spec import CarbonSpec

if TYPE_CHECKING:
    from greenflow.prefect.blocks import GreenflowCredentials, GreenflowLedger

LedgerOption: TypeAlias = "Ledger | GreenflowLedger | str | None"
CredentialsOption: TypeAlias = "GreenflowCredentials | str | None"

B = TypeVar("B", bound=Block)


def check_ledger_option(option: object) -> None:
    """Reject, when the decorator is applied, a ledger option that would fail or leak at run time."""
    if isinstance(option, str) and "://" in option:
        raise InvalidInput(
            "ledger= was given a database URL, which would end up in flow code and logs",
            fix="save it in a GreenflowLedger block and pass the block or its name, or set GREENFLOW_LEDGER_URL",
        )
    acceptable = option is None or isinstance(option, (str, Ledger)) or hasattr(option, "get_ledger")
    if not acceptable:
        raise InvalidInput(
            f"ledger={option!r} is not a Ledger, a GreenflowLedger block or a block name",
            fix="pass GreenflowLedger.load('name'), its name, or leave it out to use GREENFLOW_LEDGER_URL",
        )


def ledger_at(url: str | None = None) -> Ledger:
    """The process-wide :class:`Ledger` at ``url`` (default: ``GREENFLOW_LEDGER_URL`` or the SQLite file)."""
    return shared_ledger(url)


def load_block(cls: type[B], name: str) -> B:
    """``cls.load(name)``, synchronously even inside an async flow or task (where Prefect would return a coroutine)."""
    try:
        block: B = cls.load(name, _sync=True)  # type: ignore[call-arg, assignment]
    except ValueError as error:
        if "Unable to find block document" not in str(error):
            raise
        raise InvalidInput(
            f"there is no {cls.__name__} block named {name!r} on the Prefect server",
            fix=f"create it in the UI (Blocks) or with {cls.__name__}(...).save({name!r}); check PREFECT_API_URL",
        ) from None
    return block


def resolve_ledger(option: LedgerOption) -> Ledger:
    """The ledger an attempt writes to: a Ledger, a GreenflowLedger block (or its name), or the default."""
    if isinstance(option, Ledger):
        return option
    if option is None:
        return ledger_at()
    if isinstance(option, str):
        from greenflow.prefect.blocks import GreenflowLedger

        return load_block(GreenflowLedger, option).get_ledger()
    return option.get_ledger()


def resolve_provider(spec: CarbonSpec, credentials: CredentialsOption) -> IntensityProvider:
    """The spec's provider, authenticated with a GreenflowCredentials block when one is given."""
    if credentials is None:
        return spec.make_provider()
    if isinstance(credentials, str):
        from greenflow.prefect.blocks import GreenflowCredentials

        block: Any = load_block(GreenflowCredentials, credentials)
    else:
        block = credentials
    options: dict[str, Any] = {**dict(spec.provider_options), **block.provider_options(spec.provider)}
    return get_provider(spec.provider, **options)
