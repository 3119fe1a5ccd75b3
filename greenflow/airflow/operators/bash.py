"""CarbonAwareBashOperator: a shell command in its green window, metered through ``greenflow run``.

For work that is not a Python callable. The operator plans, reserves and **defers** like
:class:`CarbonAwareOperator`; in the window it runs the command under ``greenflow run`` (see
:mod:`.greenflow_run_command`), handing it the decision, so the entry ``greenflow run`` writes carries
the plan, the wait and the reservation, which it settles. A budget refusal happens before the wait, as
for CarbonAwareOperator; exit code 3 from ``greenflow run`` is kept for a refusal it meets itself. Other
exit codes behave as in BashOperator.

Started by a region route (``GreenGateOperator(regions={region: task_id})``), the operator follows it as
a routed CarbonAwareOperator does (:mod:`greenflow.airflow.routed`): no second wait, the command runs at
once under the route's decision, so the entry ``greenflow run`` writes has the route's region, request
time, start and plan, its decision reason names the route's entry, and savings count against the route's
home (``greenflow run`` is given the regions home first).

With ``interruptible=True`` the command runs in green **segments** (docs/interruptible.md): each
execution runs the current segment's command in the worker, metered there (one linked ledger entry per
segment), sends it SIGTERM at the segment's end (SIGKILL ``grace`` later) and defers to the trigger until
the next segment, holding nothing in between. The command must checkpoint on SIGTERM and resume from its
checkpoint (``flows/checkpointed_training.py``); exit 0 means the work is done. Past the last planned
segment it runs to completion. Its output goes to the task log; nothing but the entry id goes to XCom.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import Any

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from greenflow.airflow.carbon_aware_base import CarbonAwareBaseOperator
from greenflow.airflow.identity import identity_from_context
from greenflow.airflow.ledger_access import ledger_url
from greenflow.airflow.operators.greenflow_run_command import greenflow_run_command
from greenflow.exit_codes import BUDGET_REFUSED
from greenflow.lifecycle import Decision, Lifecycle, SegmentRun
from greenflow.segment_runner import CommandFailed, run_segment_command


class CarbonAwareBashOperator(CarbonAwareBaseOperator, BashOperator):
    """A BashOperator that starts in the green window and meters the command into the ledger.

    Takes BashOperator's arguments (``bash_command``, ``env``, ``append_env``, ``cwd``...) and the
    carbon-aware ones of :class:`~greenflow.airflow.carbon_aware_base.CarbonAwareBaseOperator`.
    """

    template_fields = (*BashOperator.template_fields, "provider_options")
    custom_operator_name = "CarbonAwareBashOperator"
    # A route already waited for the window: the command runs at once under the route's decision.
    follows_routes = True

    def execute(self, context: Any) -> Any:
        """Plan and reserve, then defer to the window or run at once."""
        lifecycle = self.carbon_lifecycle(context)
        return self._run_command(context, lifecycle, self.start(context, lifecycle))

    def execute_complete(self, context: Any, event: Mapping[str, Any]) -> Any:
        """Resume in the window and run the command."""
        lifecycle = self.carbon_lifecycle(context)
        return self._run_command(context, lifecycle, self.resume(context, lifecycle, event))

    def _run_command(self, context: Any, lifecycle: Lifecycle, decision: Decision) -> Any:
        if lifecycle.segment(decision) is not None:
            return self._run_segments(context, lifecycle, decision)
        identity = identity_from_context(context)
        wrapped = greenflow_run_command(
            lifecycle,
            decision,
            identity,
            str(self.bash_command),
            ledger_url=ledger_url(self.ledger_conn_id),
            provider_options=self.provider_options,
        )
        self.bash_command = wrapped.command
        if self.env is None:
            self.env, self.append_env = wrapped.env, True  # inherit the worker's environment, as BashOperator does
        else:
            self.env = {**self.env, **wrapped.env}
        try:
            return BashOperator.execute(self, context)
        except AirflowException as error:
            entry = lifecycle.ledger.for_attempt(identity)
            if entry is not None and entry.decision == "skipped_budget" and f"code {BUDGET_REFUSED}" in str(error):
                message = f"greenflow: budget {entry.budget!r} refused the command: {entry.error}"
                if self.on_budget_exceeded == "fail":
                    raise AirflowFailException(message) from error
                raise AirflowSkipException(message) from error
            raise
        finally:
            entry = lifecycle.ledger.for_attempt(identity)
            if entry is not None:
                self.publish_entry(context, entry)

    def _run_segments(self, context: Any, lifecycle: Lifecycle, decision: Decision) -> None:
        """An interruptible command: this execution's segment(s), metered here; then defer until the next.

        The command runs under ``bash -c`` with BashOperator's environment and ``cwd``, its output in the
        task log. It is SIGTERMed at the segment's end (SIGKILL ``grace`` later) and resumes from its own
        checkpoint in the next segment; exit 0 means done. A non-zero exit before the segment's end fails
        the task (``skip_on_exit_code`` skips it), its segment recorded ``failed``.
        """
        if self.cwd is not None and not os.path.isdir(self.cwd):
            raise AirflowException(f"The cwd {self.cwd} must be an existing directory")
        command = [shutil.which("bash") or "bash", "-c", str(self.bash_command)]
        env = self.get_env(context)
        grace = lifecycle.spec.grace

        def body(segment: SegmentRun, notes: dict[str, Any]) -> bool:
            return run_segment_command(command, segment, grace=grace, env=env, cwd=self.cwd, notes=notes)

        try:
            self.run_segments(context, lifecycle, decision, body)
        except CommandFailed as failed:
            if failed.code in self.skip_on_exit_code:
                raise AirflowSkipException(f"Bash command returned exit code {failed.code}. Skipping.") from failed
            raise AirflowException(
                f"Bash command failed. The command returned a non-zero exit code {failed.code}."
            ) from failed
