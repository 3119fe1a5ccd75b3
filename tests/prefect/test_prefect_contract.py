"""The one undocumented Prefect behaviour greenflow relies on, pinned so that an upgrade fails here, loudly.

``greenflow.prefect.deferral.exit_without_final_state`` ends a deployment flow run's process after the
run was forced into ``Scheduled`` (``AwaitingGreenWindow``): it raises ``prefect.exceptions.Pause``, and
relies on (1) the flow engine re-raising it without proposing a final state and (2)
``prefect.engine.handle_engine_signals`` turning it into exit status 0, so the worker does not mark the
run ``Crashed``. If a Prefect upgrade breaks either, deferred runs would end ``Crashed``/``Failed``
instead of waiting for their window.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import UUID

import prefect
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.engine import handle_engine_signals
from prefect.exceptions import Pause
from prefect.states import Scheduled

from greenflow.clock import utcnow
from greenflow.prefect import GREEN_WINDOW_STATE
from greenflow.prefect.deferral import exit_without_final_state

VERIFIED_ON = "3.7."
RECHECK = (
    "greenflow.prefect.deferral.exit_without_final_state relies on undocumented engine behaviour verified on "
    f"prefect {VERIFIED_ON}x; re-verify it (this file, test_deferral.py and test_end_to_end.py) before moving on"
)


def test_the_installed_prefect_is_the_one_the_behaviour_was_verified_on() -> None:
    assert prefect.__version__.startswith(VERIFIED_ON), f"prefect {prefect.__version__}: {RECHECK}"


@pytest.mark.xdist_group("prefect")
@pytest.mark.usefixtures("prefect_server")
def test_pause_after_a_forced_scheduled_state_leaves_that_state_and_stops_the_flow() -> None:
    after: list[str] = []
    window = utcnow() + timedelta(hours=3)

    @flow
    def rescheduled() -> str:
        context = FlowRunContext.get()
        assert context is not None and context.flow_run is not None
        with get_client(sync_client=True) as client:
            result = client.set_flow_run_state(
                context.flow_run.id, Scheduled(scheduled_time=window, name=GREEN_WINDOW_STATE), force=True
            )
        assert result.state is not None
        exit_without_final_state(result.state)
        after.append("ran on")  # never reached
        return "finished"

    with pytest.raises(Pause) as paused:
        rescheduled()
    assert after == [], RECHECK
    flow_run_id = paused.value.state.state_details.flow_run_id  # type: ignore[union-attr]
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(str(flow_run_id)))
        history = [s.name for s in client.read_flow_run_states(run.id)]
    assert run.state is not None
    assert (run.state.type.value, run.state.name) == ("SCHEDULED", GREEN_WINDOW_STATE), RECHECK
    assert run.next_scheduled_start_time == window, RECHECK
    assert history[-2:] == ["Running", GREEN_WINDOW_STATE], RECHECK  # no Crashed / Failed / Completed after it


def test_the_process_entry_point_exits_cleanly_on_pause() -> None:
    with pytest.raises(SystemExit) as exited, handle_engine_signals():
        raise Pause("greenflow: rescheduled")
    assert exited.value.code == 0, RECHECK  # a non-zero status would make the worker report a crash
