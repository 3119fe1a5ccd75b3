"""The blocks: Prefect's own block standards, secrets kept secret, and both blocks used by carbon-aware code."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from prefect import flow
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from prefect.testing.standard_test_suites import BlockStandardTestSuite

from greenflow.errors import InvalidInput
from greenflow.intensity.providers.http import Secret
from greenflow.ledger import Ledger
from greenflow.prefect import GreenflowCredentials, GreenflowLedger, carbon_aware
from greenflow.prefect.connections import resolve_provider
from greenflow.spec import CarbonSpec


class TestGreenflowCredentialsStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[Block]:
        return GreenflowCredentials

    @pytest.mark.skip(reason="downloads the block's logo from the internet, which this machine has no access to")
    def test_has_a_valid_image(self, block: type[Block]) -> None: ...


class TestGreenflowLedgerStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[Block]:
        return GreenflowLedger

    @pytest.mark.skip(reason="downloads the block's logo from the internet, which this machine has no access to")
    def test_has_a_valid_image(self, block: type[Block]) -> None: ...


def test_slugs_and_the_collection_entry_point() -> None:
    assert GreenflowCredentials.get_block_type_slug() == "greenflow-credentials"
    assert GreenflowLedger.get_block_type_slug() == "greenflow-ledger"
    [point] = [p for p in entry_points(group="prefect.collections") if p.name == "greenflow"]
    module = point.load()
    assert module.GreenflowCredentials is GreenflowCredentials and module.GreenflowLedger is GreenflowLedger


def test_credentials_reach_the_provider_wrapped_and_never_print() -> None:
    block = GreenflowCredentials(
        electricitymaps_token="em-token-123", watttime_username="ml", watttime_password="pw-456"
    )
    assert "em-token-123" not in repr(block) and "pw-456" not in repr(block)
    options = block.provider_options("electricitymaps")
    assert isinstance(options["token"], Secret) and options["token"].reveal() == "em-token-123"
    assert "em-token-123" not in repr(options)
    assert block.provider_options("watttime")["username"] == "ml"
    assert block.provider_options("ukgrid") == {}
    provider = resolve_provider(CarbonSpec.build(region="DE", provider="electricitymaps"), block)
    assert "em-token-123" not in repr(provider)


@pytest.mark.xdist_group("prefect")
@pytest.mark.usefixtures("prefect_server")
def test_blocks_are_registered_and_their_secrets_masked_in_the_api() -> None:
    with get_client(sync_client=True) as client:
        # Registered when the server loaded the `greenflow` collection, before anyone saved one.
        assert client.read_block_type_by_slug("greenflow-credentials").slug == "greenflow-credentials"
        assert client.read_block_type_by_slug("greenflow-ledger").slug == "greenflow-ledger"
    block_id = GreenflowCredentials(electricitymaps_token="em-token-123").save("prod-em", overwrite=True)
    with get_client(sync_client=True) as client:
        raw = client.request("GET", f"/block_documents/{block_id}").json()
    assert raw["data"]["electricitymaps_token"] != "em-token-123"
    assert "em-token-123" not in str(raw)
    loaded = GreenflowCredentials.load("prod-em")
    assert loaded.electricitymaps_token is not None
    assert loaded.electricitymaps_token.get_secret_value() == "em-token-123"


@pytest.mark.xdist_group("prefect")
@pytest.mark.usefixtures("prefect_server")
def test_a_ledger_block_named_by_a_task_receives_its_entries(tmp_path, replay, ledger) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'team-ledger.db'}"
    GreenflowLedger(url=url).save("team-ledger", overwrite=True)

    @flow
    @carbon_aware(region="ES", provider="trace", provider_options=replay(), max_delay="0h", ledger="team-ledger")
    def audited() -> str:
        return "ok"

    assert audited() == "ok"
    [entry] = Ledger(url).entries()
    assert entry.workflow_id == "audited" and entry.decision == "ran_now"
    assert ledger.entries() == []  # not the default ledger

    @carbon_aware(region="ES", provider="trace", provider_options=replay(), max_delay="0h", ledger="no-such-block")
    def lost() -> None: ...

    with pytest.raises(InvalidInput, match="there is no GreenflowLedger block named 'no-such-block'"):
        lost()
