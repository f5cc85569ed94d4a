"""The alert evaluator: one per cluster, fed by the metrics ingest and the hub's state events.

Values arrive three ways: instance samples (`observe_samples`, on the ingest hot path: one
dict lookup per row when no rule concerns the instance), instance state changes and node
status changes (hub listeners). A tick fires and resolves what time alone decides. Transitions
go to the outbox (master/services/alerting/outbox.py).

An offline node suppresses its instances: their pending and clearing progress is dropped and
their observations ignored until the node is back, while the node's own `node_status` rule (the
built-in "node offline" rule by default) raises the one alert that matters.

`Lease` is the seam for several masters: only the holder of the lease evaluates. In-process it
is always held; a PostgreSQL advisory lock can implement it without touching the callers.
"""

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from master.db import models
from master.db.session import Database, get_or_404
from master.hub import Hub
from master.services.agents import AgentRegistry
from master.services.alerting import evaluator
from master.services.alerting.active import AlertRecord, SilenceRecord
from master.services.alerting.evaluator import Track, Transition
from master.services.alerting.outbox import AlertOutbox
from master.services.alerting.rules import Rule, from_row
from master.services.alerting.scope import applies_instance, applies_node, covers, target_of
from master.services.alerting.serializers import alert_out
from master.services.alerting.webhooks import Notifier
from master.services.directory import Directory

log = logging.getLogger(__name__)

TICK = 0.25
STARTUP_GRACE = 30.0  # seconds after start before a node that never came back counts as offline
Key = tuple[str, str]  # (rule id, target id)


class Lease(Protocol):
    def held(self) -> bool: ...


class LocalLease:
    """A single master always evaluates."""

    def held(self) -> bool:
        return True


class AlertEngine:
    def __init__(
        self,
        db: Database,
        hub: Hub,
        directory: Directory,
        agents: AgentRegistry,
        notifier: Notifier,
        master_url: str,
        lease: Lease | None = None,
    ) -> None:
        self.hub = hub
        self.directory = directory
        self.agents = agents
        self.outbox = AlertOutbox(db, hub, notifier, master_url)
        self.lease: Lease = lease or LocalLease()
        self.rules: dict[str, Rule] = {}
        self.tracks: dict[Key, Track] = {}
        self.armed: set[Key] = set()
        self.open: dict[str, AlertRecord] = {}  # firing alerts by id
        self.silences: dict[str, SilenceRecord] = {}
        self.fired = 0
        self.resolved = 0
        self._numeric: list[Rule] = []
        self._states: list[Rule] = []
        self._nodes: list[Rule] = []
        self._per_instance: dict[str, tuple[Rule, ...]] = {}
        self._node_status: dict[str, str] = {}
        self._started = time.time()
        self._startup_checked = False
        self._task: asyncio.Task[None] | None = None
        self.loop_lags: deque[float] = deque(maxlen=int(10 / TICK))  # the last 10 s
        hub.listen("instance", self.on_instance)
        hub.listen("node", self.on_node)

    # -- life cycle ------------------------------------------------------------------------

    def load(self, s: Session) -> None:
        for rule_row in s.scalars(select(models.AlertRule)):
            self.rules[rule_row.id] = from_row(rule_row)
        self._reindex()
        now = time.time()
        for silence in s.scalars(select(models.Silence).where(models.Silence.ends_at > now)):
            self.silences[silence.id] = SilenceRecord(
                silence.id, dict(silence.matcher), silence.starts_at, silence.ends_at
            )
        # Alerts still firing from before a restart keep their identity and resolve normally.
        for row in s.scalars(select(models.Alert).where(models.Alert.state == "firing")):
            rec = AlertRecord.from_row(row)
            if rec.rule_id is None or rec.rule_id not in self.rules:
                row.state, row.resolved_at = "resolved", now  # its rule went away meanwhile
                row.duration = now - row.started_at
                continue
            self.open[rec.id] = rec
            track = self.tracks[(rec.rule_id, rec.target_id)] = Track()
            evaluator.fired(track, rec.id, rec.started_at)
        s.commit()
        self._started = now

    def reload(self, s: Session) -> None:
        """Start over from the database (after a backup restore swapped it): unsent
        notifications of the old state are dropped with it."""
        self.rules.clear()
        self.tracks.clear()
        self.armed.clear()
        self.open.clear()
        self.silences.clear()
        self._node_status.clear()
        self.outbox.clear()
        self.load(s)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.outbox.flush()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            await asyncio.sleep(TICK)
            # How late the loop woke us: the master's own health (a busy loop delays ingest,
            # events and liveness alike).
            self.loop_lags.append(max(0.0, loop.time() - began - TICK))
            self.tick(time.time())

    # -- rules -----------------------------------------------------------------------------

    def _reindex(self) -> None:
        live = [r for r in self.rules.values() if r.enabled]
        self._numeric = [r for r in live if r.numeric]
        self._states = [r for r in live if not r.numeric and not r.on_nodes]
        self._nodes = [r for r in live if r.on_nodes]
        self._per_instance.clear()

    def set_rule(self, row: models.AlertRule) -> Rule:
        """A rule was created or changed: evaluate with it from now on; alerts of targets it
        no longer covers (or of a disabled rule) resolve."""
        rule = from_row(row)
        old = self.rules.get(rule.id)
        self.rules[rule.id] = rule
        self._reindex()
        if old is not None:
            if not rule.enabled or old.metric != rule.metric:
                self._close(rule.id, old, lambda _: False)
            else:
                self._close(rule.id, old, lambda target: covers(rule, target, self.directory))
        return rule

    def remove_rule(self, rule_id: str) -> None:
        old = self.rules.pop(rule_id, None)
        self._reindex()
        if old is not None:
            self._close(rule_id, old, lambda _: False)

    def _close(self, rule_id: str, rule: Rule, keep: Callable[[str], bool]) -> None:
        now = time.time()
        for key in [k for k in self.tracks if k[0] == rule_id]:
            if keep(key[1]):
                continue
            track = self.tracks.pop(key)
            self.armed.discard(key)
            if track.firing:
                self._resolve(rule, track, None, now)

    # -- observations ----------------------------------------------------------------------

    def observe_samples(
        self, node_id: str, ts: float, interval: float, rows: list[tuple[Any, ...]]
    ) -> None:
        """Instance rows of one `metrics` message (hot path)."""
        if not self._numeric or not self.lease.held():
            return
        now = time.time()  # master time, like the tick's: agent clocks may be off
        since = now - interval
        fresh_for = interval * 2.5 + 1.0
        cache = self._per_instance
        tracks = self.tracks
        for row in rows:
            iid = row[0]
            rules = cache.get(iid)
            if rules is None:
                rules = self._numeric_for(iid)
            for rule in rules:
                value = row[1] if rule.metric == "cpu_percent" else row[2]
                key = (rule.id, iid)
                track = tracks.get(key)
                if track is None:
                    if not rule.breached(value):
                        continue
                    track = tracks[key] = Track()
                step = evaluator.observe(rule, track, value, now, since, fresh_for)
                self._after(rule, key, track, step, now)

    def _numeric_for(self, instance_id: str) -> tuple[Rule, ...]:
        info = self.directory.instances.get(instance_id)
        rules = tuple(r for r in self._numeric if applies_instance(r, info)) if info else ()
        self._per_instance[instance_id] = rules
        return rules

    def on_instance(self, data: dict[str, Any]) -> None:
        iid = data.get("id")
        if not isinstance(iid, str):
            return
        self._per_instance.pop(iid, None)  # its node or system may have changed
        if data.get("deleted"):
            self._forget_target(iid)
            return
        if not self._states or not self.lease.held():
            return
        info = self.directory.instances.get(iid)
        if info is None:
            return
        if not self.agents.is_online(info.node_id):
            self._suppress_instance(iid)  # "unknown" because its node is away: not news
            return
        state = data.get("state")
        now = time.time()
        for rule in self._states:
            if applies_instance(rule, info):
                self._observe_state(rule, iid, state, now)

    def on_node(self, data: dict[str, Any]) -> None:
        node_id = data.get("id")
        if not isinstance(node_id, str):
            return
        if data.get("deleted"):
            self._node_status.pop(node_id, None)
            self._forget_target(node_id)
            return
        status = data.get("status")
        if not isinstance(status, str) or self._node_status.get(node_id) == status:
            return  # heartbeat load updates: nothing new for alerts
        self._node_status[node_id] = status
        if status == "offline":
            for iid in list(self.directory.owned_by(node_id)):
                self._suppress_instance(iid)
            if data.get("planned"):
                return  # its agent said goodbye, or this master is stopping: not a lost node
        if not self.lease.held():
            return
        now = time.time()
        for rule in self._nodes:
            if applies_node(rule, node_id, self.directory):
                self._observe_state(rule, node_id, status, now)

    def _observe_state(self, rule: Rule, target_id: str, value: Any, now: float) -> None:
        key = (rule.id, target_id)
        track = self.tracks.get(key)
        if track is None:
            if not rule.breached(value):
                return
            track = self.tracks[key] = Track()
        self._after(rule, key, track, evaluator.observe(rule, track, value, now, now), now)

    def _suppress_instance(self, iid: str) -> None:
        for rule in (*self._numeric, *self._states):
            key = (rule.id, iid)
            track = self.tracks.get(key)
            if track is None:
                continue
            track.reset()
            self.armed.discard(key)
            if track.idle:
                del self.tracks[key]

    def _forget_target(self, target_id: str) -> None:
        """The instance or node is gone: its alerts resolve (no value) and its tracks go."""
        now = time.time()
        for key in [k for k in self.tracks if k[1] == target_id]:
            track = self.tracks.pop(key)
            self.armed.discard(key)
            if track.firing:
                self._resolve(self.rules.get(key[0]), track, None, now)

    # -- transitions -----------------------------------------------------------------------

    def _after(
        self, rule: Rule, key: Key, track: Track, step: Transition | None, now: float
    ) -> None:
        if step is Transition.FIRE:
            self._fire(rule, key, track, now)
        elif step is Transition.RESOLVE:
            self._resolve(rule, track, track.value, now)
        if track.armed:
            self.armed.add(key)
        else:
            self.armed.discard(key)
            if track.idle:
                self.tracks.pop(key, None)

    def _fire(self, rule: Rule, key: Key, track: Track, now: float) -> None:
        target_id = key[1]
        target = target_of(rule, target_id, self.directory)
        rec = AlertRecord(
            rule_id=rule.id,
            rule_name=rule.name,
            metric=rule.metric,
            severity=rule.severity,
            target_kind=target.kind,
            target_id=target_id,
            target_name=target.name,
            node_id=target.node_id,
            system_id=target.system_id,
            value=track.value,
            started_at=now,
        )
        rec.silenced = any(s.active(now) and s.matches(rec) for s in self.silences.values())
        rec.notified = bool(rule.webhook_url) and not rec.silenced
        evaluator.fired(track, rec.id, now)
        self.open[rec.id] = rec
        self.fired += 1
        log.info(
            "alert %s firing: %s on %s %s = %r",
            rec.id,
            rule.describe(),
            target.kind,
            target.name or target_id,
            track.value,
        )
        self.outbox.emit("firing", rec, rule)

    def _resolve(self, rule: Rule | None, track: Track, value: Any, now: float) -> None:
        rec = self.open.pop(track.alert_id or "", None)
        evaluator.resolved(track)
        if rec is None:
            return
        rec.state = "resolved"
        rec.resolved_at = now
        rec.resolved_value = value
        self.resolved += 1
        log.info("alert %s resolved after %.1f s", rec.id, rec.duration or 0.0)
        self.outbox.emit("resolved", rec, rule)

    def tick(self, now: float) -> None:
        if self.lease.held():
            for key in list(self.armed):
                track = self.tracks.get(key)
                rule = self.rules.get(key[0])
                if track is None or rule is None:
                    self.armed.discard(key)
                    continue
                self._after(rule, key, track, evaluator.due(rule, track, now), now)
            if not self._startup_checked and now - self._started >= STARTUP_GRACE:
                self._startup_checked = True
                for node_id in list(self.directory.hostnames):
                    if node_id not in self._node_status and not self.agents.is_online(node_id):
                        self.on_node({"id": node_id, "status": "offline"})
        for sid in [k for k, s in self.silences.items() if s.ends_at <= now]:
            del self.silences[sid]
        if self.outbox.pending:
            self.outbox.flush()

    # -- operator actions ------------------------------------------------------------------

    def ack(self, s: Session, alert_id: str, user: str) -> models.Alert:
        row = get_or_404(s, models.Alert, alert_id, "alert")
        if row.acked_at is None:
            row.acked_at, row.acked_by = time.time(), user
            s.commit()
            rec = self.open.get(alert_id)
            if rec is not None:
                rec.acked_at, rec.acked_by = row.acked_at, row.acked_by
            self.hub.publish("alert", alert_out(row).model_dump())
        return row

    def set_silence(self, row: models.Silence) -> None:
        self.silences[row.id] = SilenceRecord(row.id, dict(row.matcher), row.starts_at, row.ends_at)

    def remove_silence(self, silence_id: str) -> None:
        self.silences.pop(silence_id, None)

    # -- health ----------------------------------------------------------------------------

    def firing_by_severity(self) -> dict[str, int]:
        out: dict[str, int] = {"warning": 0, "critical": 0}
        for rec in list(self.open.values()):  # a snapshot: scrapes run in a worker thread
            out[rec.severity] = out.get(rec.severity, 0) + 1
        return out
