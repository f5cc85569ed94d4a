"""Adopting a process GDOS did not start: the agent finds it (refusing ambiguity and reused
PIDs), the master records it as an instance with `adopted: true` and no package."""

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from master.db import models
from master.services.orchestrator import Orchestrator
from master.services.reports import apply_to_instance
from protocol.errors import ErrorCode, GdosError
from protocol.messages import Adopt, AdoptSpec, InstanceReport, InstanceSpec, WireError
from protocol.rest import AdoptIn
from protocol.states import DesiredState, InstanceState

log = logging.getLogger(__name__)

ADOPT_TIMEOUT = 30.0


async def adopt(orch: Orchestrator, s: Session, body: AdoptIn) -> models.Instance:
    node = _check(s, body)
    link = orch.agents.require(node.id)
    spec = AdoptSpec.from_data(body.model_dump(exclude={"system_id", "node_id", "name"}))
    inst = _insert(s, body, spec)
    msg = Adopt(
        id=link.next_id(), spec=InstanceSpec(instance_id=inst.id, name=inst.name, adopt=spec)
    )
    try:
        result = await link.request(msg, ADOPT_TIMEOUT)
    except GdosError:
        _discard(s, inst)
        raise
    if not result.ok:
        _discard(s, inst)
        raise _refusal(result.error)
    s.refresh(inst)
    if inst.pid is None:  # no report arrived before the result: apply the result's
        apply_to_instance(inst, InstanceReport.from_data(result.data["report"]))
    s.commit()
    orch.feed.publish(inst)
    log.info("adopted %s on node %s (pid %s)", inst.name, node.id, inst.pid)
    return inst


def _check(s: Session, body: AdoptIn) -> models.Node:
    """The system and node exist and the name is free; returns the node."""
    if s.get(models.System, body.system_id) is None:
        raise GdosError(ErrorCode.NOT_FOUND, f"no system {body.system_id}")
    node = s.get(models.Node, body.node_id)
    if node is None or node.revoked:
        raise GdosError(ErrorCode.NOT_FOUND, f"no node {body.node_id}")
    taken = s.scalars(
        select(models.Instance.id).where(
            models.Instance.system_id == body.system_id, models.Instance.name == body.name
        )
    ).first()
    if taken:
        raise GdosError(
            ErrorCode.ALREADY_EXISTS, f"the system already has an instance named {body.name}"
        )
    return node


def _insert(s: Session, body: AdoptIn, spec: AdoptSpec) -> models.Instance:
    """The row exists before the agent acts so that its first reports (a health probe may
    answer before the adopt result) land on it; it is published only once adopted."""
    inst = models.Instance(
        system_id=body.system_id,
        module_id=None,
        node_id=body.node_id,
        name=body.name,
        package_id=None,
        version=None,
        state=InstanceState.UNKNOWN,
        desired_state=DesiredState.RUNNING,
        adopted=True,
        adoption=spec.to_dict(),
    )
    s.add(inst)
    try:
        s.commit()
    except IntegrityError:
        s.rollback()
        raise GdosError(ErrorCode.CONFLICT, "another request took that name; retry") from None
    return inst


def _refusal(err: WireError | None) -> GdosError:
    """The agent's refusal, with its code when this master knows it."""
    if err is None:
        return GdosError(ErrorCode.INTERNAL, "the agent refused the adoption")
    try:
        code = ErrorCode(err.code)
    except ValueError:
        code = ErrorCode.INTERNAL
    return GdosError(code, err.message, err.details)


def _discard(s: Session, inst: models.Instance) -> None:
    s.rollback()
    s.delete(inst)
    s.commit()
