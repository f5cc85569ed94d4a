"""What a node's `hello` changes, decided without I/O: the master's rows of the node against the
agent's reports. The orchestrator writes the changes, publishes the views and re-drives the
actions (commands lost with the connection), so nothing is started twice or forgotten."""

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from master.services import instance_rows
from master.services.instance_rows import Row
from protocol.messages import InstanceReport
from protocol.rest import InstanceOut, iso
from protocol.states import ACTIVE_STATES, DesiredState, InstanceState

Action = Literal["forget", "deploy", "start", "stop", "destroy"]

NOT_ON_NODE = "the agent does not have this instance (files removed?)"


@dataclass(frozen=True)
class Reconciliation:
    changes: dict[str, Row]  # instance id -> columns to write, only where its view changes
    views: dict[str, InstanceOut]  # the new view of each changed instance, to publish
    actions: list[tuple[Action, str]]  # (action, instance id) to re-drive, in row order
    unmanaged: list[str]  # ids the agent runs that the master does not know, sorted


def reconcile(
    rows: Mapping[str, Row],
    reports: Iterable[InstanceReport],
    restarting: Collection[str] = frozenset(),
) -> Reconciliation:
    """`restarting`: instances whose restart lost its stop with the connection; one the agent
    found ended is started (for any other, an ended process is the service's own doing)."""
    reported = {r.instance_id: r for r in reports}
    actions: list[tuple[Action, str]] = []
    changes: dict[str, Row] = {}
    for iid, row in rows.items():
        report = reported.get(iid)
        if report is None:
            if row["state"] == InstanceState.DESTROYING:
                actions.append(("forget", iid))
            elif row["state"] == InstanceState.DEPLOYING:
                actions.append(("deploy", iid))
            else:
                changes[iid] = {
                    "state": InstanceState.FAILED,
                    "pid": None,
                    "last_error": NOT_ON_NODE,
                }
            continue
        change = instance_rows.report_changes(row, report)
        if change["state"] == InstanceState.DESTROYING:
            actions.append(("destroy", iid))
        elif row["desired_state"] == DesiredState.RUNNING and (
            report.state == InstanceState.STOPPED
            or (report.state == InstanceState.EXITED and iid in restarting)
        ):
            change["state"] = InstanceState.STARTING  # a start that never arrived
            actions.append(("start", iid))
        elif row["desired_state"] == DesiredState.STOPPED and report.state in ACTIVE_STATES:
            change["state"] = InstanceState.STOPPING  # a stop that never arrived
            actions.append(("stop", iid))
        changes[iid] = change
    # Only what changed is published: a fleet reconnecting must not flood consoles.
    views: dict[str, InstanceOut] = {}
    for iid, change in changes.items():
        if _shown_differently(rows[iid], change):
            views[iid] = instance_rows.view({**rows[iid], **change})
    return Reconciliation(
        changes={iid: changes[iid] for iid in views},
        views=views,
        actions=actions,
        unmanaged=sorted(set(reported) - set(rows)),
    )


def _shown_differently(row: Row, change: Row) -> bool:
    """Would the change alter the instance's view? Each column a report changes is a field of
    the view as it is, but `started_at`, shown as ISO text (compared here without building
    two views per instance: a reconnecting fleet's every instance passes here)."""
    for column, value in change.items():
        if column == "started_at":
            if iso(value) != iso(row[column]):
                return True
        elif value != row[column]:
            return True
    return False
