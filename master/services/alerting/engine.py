"""The alert evaluator: one per cluster, fed by the metrics ingest and the hub's state events.

Values arrive three ways: instance samples (`observe_samples`, on the ingest hot path: one
dict lookup per row when no rule concerns the instance), instance state changes and node
status changes (hub listeners). A tick fires and resolves what time alone decides. Transitions
go to the outbox (master/services/alerting/outbox.py).

An offline node suppresses its instances: their pending and clearing progress is dropped and
their observations ignored until the node is back, while the node's own `node_status` rule (the
built-in "node offline" rule by default) raises the one alert that matters.

Several masters (PostgreSQL) split the work by ownership: a master evaluates the instances and
nodes whose agent it holds (their samples and reports arrive only there), and the holder of the
`Lease` (the leader) evaluates `node_status` rules for the nodes no online master holds, and
sends the webhooks nobody else is sending. A master that comes to hold a node, or to lead, takes
the node's open alerts from the database instead of starting fresh; one that loses it forgets
them without resolving them. Rules and silences are read again from the database every second.
On SQLite the master is alone, holds the lease, and none of this runs.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from operator import itemgetter
from typing import Any, Protocol

from sqlalchemy import exists, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from master.db import models
from master.db.session import Database, get_or_404
from master.hub import Hub
from master.services.agents import AgentRegistry
from master.services.alerting import evaluator
from master.services.alerting.active import AlertRecord, SilenceRecord
from master.services.alerting.delivery import WebhookOutbox
from master.services.alerting.evaluator import Track, Transition
from master.services.alerting.outbox import AlertOutbox
from master.services.alerting.rules import Rule, breach_test, from_row
from master.services.alerting.scope import applies_instance, applies_node, covers, target_of
from master.services.alerting.serializers import alert_out
from master.services.alerting.tracks import Tracks
from master.services.alerting.webhooks import Notifier
from master.services.directory import Directory

log = logging.getLogger(__name__)

TICK = 0.25
STARTUP_GRACE = 30.0  # seconds after start before a node that never came back counts as offline
HANDOVER_GRACE = 5.0  # several masters: a node no master holds for this long is lost
SYNC_EVERY = 1.0  # several masters: seconds between reads of nodes, rules and silences
Key = tuple[str, str]  # (rule id, target id)
# A numeric rule as a sample row meets it: the rule, the row column, its breach test, threshold.
NumericCheck = tuple[Rule, int, Callable[[Any, Any], Any], Any]
_first, _CPU, _RSS = itemgetter(0), itemgetter(1), itemgetter(2)  # a sample row's columns
ELSEWHERE = "online elsewhere"  # a node's status as seen here while another master holds it


class Lease(Protocol):
    def held(self) -> bool: ...


class LocalLease:
    """A single master always leads."""

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
        self.db = db
        self.hub = hub
        self.directory = directory
        self.agents = agents
        self.several = not db.is_sqlite  # other masters may share the database
        self.webhooks = WebhookOutbox(db, notifier, agents)
        self.outbox = AlertOutbox(db, hub, notifier, self.webhooks, master_url)
        self.outbox.on_lost = self._lost
        self.lease: Lease = lease or LocalLease()
        self.rules: dict[str, Rule] = {}
        self.tracks = Tracks()
        self.armed: set[Key] = set()
        self.open: dict[str, AlertRecord] = {}  # firing alerts by id
        self.silences: dict[str, SilenceRecord] = {}
        self.fired = 0
        self.resolved = 0
        self._numeric: list[Rule] = []
        self._states: list[Rule] = []
        self._nodes: list[Rule] = []
        # Per instance: the numeric rules that apply, each with its row column and breach test.
        self._per_instance: dict[str, tuple[NumericCheck, ...]] = {}
        self._node_status: dict[str, str] = {}
        self._started = time.time()
        self._startup_checked = False
        self._task: asyncio.Task[None] | None = None
        # Several masters only:
        self._held: set[str] = set()  # nodes held here whose open alerts are loaded
        self._leading: dict[str, float] = {}  # nodes no master holds -> since (lease holder)
        self._planned: set[str] = set()  # nodes whose agent said goodbye
        self._adopting: set[str] = set()  # nodes held here, open alerts to load this turn
        self._rule_versions: dict[str, float] = {}
        self._next_sync = 0.0
        hub.listen("instance", self.on_instance)
        hub.listen("node", self.on_node)

    # -- life cycle ------------------------------------------------------------------------

    def load(self, s: Session) -> None:
        for rule_row in s.scalars(select(models.AlertRule)):
            self.rules[rule_row.id] = from_row(rule_row)
            self._rule_versions[rule_row.id] = rule_row.updated_at
        self._reindex()
        now = time.time()
        self._load_silences(s, now)
        self._started = now
        if self.several:
            return  # open alerts are taken with the nodes this master comes to hold, or lead
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

    def _load_silences(self, s: Session, now: float) -> None:
        self.silences = {
            row.id: SilenceRecord(row.id, dict(row.matcher), row.starts_at, row.ends_at)
            for row in s.scalars(select(models.Silence).where(models.Silence.ends_at > now))
        }

    def reload(self, s: Session) -> None:
        """Start over from the database (after a backup restore swapped it): unsent
        notifications of the old state are dropped with it."""
        self.rules.clear()
        self.tracks.clear()
        self.armed.clear()
        self.open.clear()
        self.silences.clear()
        self._node_status.clear()
        self._held.clear()
        self._leading.clear()
        self._planned.clear()
        self._rule_versions.clear()
        self.outbox.clear()
        self.load(s)

    async def start(self) -> None:
        self.webhooks.resend(at_start=True)  # what this master's earlier process left unsent
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.outbox.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK)
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
        self._rule_versions[rule.id] = row.updated_at
        self._reindex()
        if old is None and any(r is rule for r in self._states):
            self._seed_states(rule)
        if old is None and any(r is rule for r in self._nodes):
            self._seed_nodes(rule)
        if old is not None:
            if not rule.enabled or old.metric != rule.metric:
                self._close(rule.id, old, lambda _: False)
            else:
                self._close(rule.id, old, lambda target: covers(rule, target, self.directory))
        return rule

    def _seed_states(self, rule: Rule) -> None:
        """A new state rule also judges the states instances are in already (a rule made while
        its instance is down, or learnt from another master after the change), not only the next
        change."""
        now = time.time()
        for info in list(self.directory.instances.values()):
            if applies_instance(rule, info) and self.agents.is_online(info.node_id):
                self._observe_state(rule, info.id, info.state, now)

    def _seed_nodes(self, rule: Rule) -> None:
        """The same for a new node rule and the nodes' current status: a node already lost is
        judged now; one whose agent said goodbye is not a lost node. (With several masters the
        lease holder judges the lost nodes with every rule at each sync.)"""
        if self.several or not self.lease.held():
            return
        now = time.time()
        for node_id, status in list(self._node_status.items()):
            if node_id in self._planned:
                continue
            if applies_node(rule, node_id, self.directory):
                self._observe_state(rule, node_id, status, now)

    def remove_rule(self, rule_id: str) -> None:
        old = self.rules.pop(rule_id, None)
        self._rule_versions.pop(rule_id, None)
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
        if not self._numeric or not rows:
            return
        if self.tracks.targets.keys().isdisjoint(map(_first, rows)) and not self._any_breach(rows):
            return  # no row has a track, none breaches a rule: nothing to start or follow
        now = time.time()  # master time, like the tick's: agent clocks may be off
        since = now - interval
        fresh_for = interval * 2.5 + 1.0
        cache = self._per_instance
        tracks = self.tracks
        for row in rows:
            iid = row[0]
            checks = cache.get(iid)
            if checks is None:
                checks = self._numeric_for(iid)
            for rule, column, test, threshold in checks:
                value = row[column]
                key = (rule.id, iid)
                track = tracks.get(key)
                if track is None:
                    if not test(value, threshold):
                        continue
                    track = tracks[key] = Track()
                step = evaluator.observe(rule, track, value, now, since, fresh_for)
                self._after(rule, key, track, step, now)

    def _any_breach(self, rows: list[tuple[Any, ...]]) -> bool:
        """Whether a row breaches a numeric rule, whatever the rule's scope: one C pass over
        a column per rule (the extreme value for `>` and `<`)."""
        for rule in self._numeric:
            values = list(map(_CPU if rule.metric == "cpu_percent" else _RSS, rows))
            op, threshold = rule.op, rule.threshold
            if op == ">":
                hit = max(values) > threshold
            elif op == "<":
                hit = min(values) < threshold
            elif op == "==":
                hit = threshold in values
            else:
                hit = values.count(threshold) != len(values)
            if hit:
                return True
        return False

    def _numeric_for(self, instance_id: str) -> tuple[NumericCheck, ...]:
        info = self.directory.instances.get(instance_id)
        rules = [r for r in self._numeric if applies_instance(r, info)] if info else []
        checks = tuple(
            (r, 1 if r.metric == "cpu_percent" else 2, breach_test(r), r.threshold) for r in rules
        )
        self._per_instance[instance_id] = checks
        return checks

    def on_instance(self, data: dict[str, Any]) -> None:
        iid = data.get("id")
        if not isinstance(iid, str):
            return
        self._per_instance.pop(iid, None)  # its node or system may have changed
        if data.get("deleted"):
            self._forget_target(iid)
            return
        if not self._states:
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
            self._held.discard(node_id)
            self._leading.pop(node_id, None)
            self._planned.discard(node_id)
            self._forget_target(node_id)
            return
        status = data.get("status")
        if not isinstance(status, str):
            return
        if self.several and status == "online" and node_id not in self._held:
            self._take_node(node_id)
            return
        if self._node_status.get(node_id) == status:
            return  # heartbeat load updates: nothing new for alerts
        self._node_status[node_id] = status
        if status != "offline":
            self._planned.discard(node_id)
        if status == "offline":
            for iid in list(self.directory.owned_by(node_id)):
                self._suppress_instance(iid)
            planned = bool(data.get("planned"))
            if self.several:  # nobody holds it now: the lease holder's to judge
                if planned:
                    self._planned.add(node_id)
                leads = self.lease.held() and not planned
                self._release_node(node_id, keep_node=leads)
                if not leads:
                    return
                self._leading[node_id] = time.time() - HANDOVER_GRACE  # lost here: judged now
            elif planned:
                self._planned.add(node_id)
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
        if self.several and now >= self._next_sync:
            self._next_sync = now + SYNC_EVERY
            self.sync(now)
        for key in list(self.armed):
            track = self.tracks.get(key)
            rule = self.rules.get(key[0])
            if track is None or rule is None:
                self.armed.discard(key)
                continue
            self._after(rule, key, track, evaluator.due(rule, track, now), now)
        if (
            not self.several  # there the lease holder reads who holds which node (`sync`)
            and not self._startup_checked
            and now - self._started >= STARTUP_GRACE
            and self.lease.held()
        ):
            self._startup_checked = True
            for node_id in list(self.directory.hostnames):
                if node_id not in self._node_status and not self.agents.is_online(node_id):
                    self.on_node({"id": node_id, "status": "offline"})
        for sid in [k for k, s in self.silences.items() if s.ends_at <= now]:
            del self.silences[sid]
        if self.outbox.pending:
            self.outbox.flush()

    # -- several masters -------------------------------------------------------------------

    def _take_node(self, node_id: str) -> None:
        """An online node: this master's to evaluate when it holds the link (its open alerts
        are loaded at the end of this loop turn, for a whole reconnect burst at once)."""
        if not self.agents.is_online(node_id):  # held by another master
            if self._node_status.get(node_id) != ELSEWHERE:
                self._node_status[node_id] = ELSEWHERE
                self._release_node(node_id)
            return
        self._node_status[node_id] = "online"
        self._planned.discard(node_id)
        self._release_node(node_id)  # what this engine knew of it may be stale: the database
        self._held.add(node_id)
        self._adopting.add(node_id)
        if len(self._adopting) == 1:
            try:
                asyncio.get_running_loop().call_soon(self._adopt_held)
            except RuntimeError:  # no loop (unit tests): at once
                self._adopt_held()

    def _adopt_held(self) -> None:
        ids, self._adopting = [n for n in self._adopting if n in self._held], set()
        if not ids:
            return
        if self.outbox.pending:
            self.outbox.flush()  # alerts opened this turn are rows before they are read
        try:
            with self.db.session() as s:
                self._adopt(s, ids, nodes_only=False)
                s.commit()
        except SQLAlchemyError:
            log.warning("could not load the open alerts of %d node(s)", len(ids), exc_info=True)
            return
        now = time.time()
        for node_id in ids:
            for rule in self._nodes:
                if applies_node(rule, node_id, self.directory):
                    self._observe_state(rule, node_id, "online", now)
            for iid in self.directory.owned_by(node_id):
                info = self.directory.instances.get(iid)
                if info is None:
                    continue
                for rule in self._states:
                    if (rule.id, iid) in self.tracks:
                        self._observe_state(rule, iid, info.state, now)

    def _adopt(self, s: Session, node_ids: list[str], nodes_only: bool) -> None:
        """Take the open alerts of these nodes (and of their instances, unless `nodes_only`)
        as this engine's own: they go on firing, and resolve here."""
        q = select(models.Alert).where(
            models.Alert.state == "firing", models.Alert.node_id.in_(node_ids)
        )
        if nodes_only:
            q = q.where(models.Alert.target_kind == "node")
        now = time.time()
        for row in s.scalars(q):
            if row.id in self.open:
                continue
            rec = AlertRecord.from_row(row)
            rule = self.rules.get(rec.rule_id or "")
            if rule is None:  # its rule went away meanwhile
                rec.state, rec.resolved_at = "resolved", now
                self.outbox.emit("resolved", rec, None)
                continue
            key = (rule.id, rec.target_id)
            track = self.tracks.get(key)
            if track is None:
                track = self.tracks[key] = Track()
            elif track.firing:
                continue
            evaluator.fired(track, rec.id, rec.started_at)
            self.armed.discard(key)
            self.open[rec.id] = rec

    def _release_node(self, node_id: str, keep_node: bool = False) -> None:
        """The node is another master's to evaluate now (or the lease holder's): forget its
        tracks and open alerts here, resolving nothing (`keep_node`: but its own, which the
        lease holder goes on evaluating)."""
        self._held.discard(node_id)
        self._adopting.discard(node_id)
        if not keep_node:
            self._leading.pop(node_id, None)
        targets = set(self.directory.owned_by(node_id))
        if not keep_node:
            targets.add(node_id)
        for key in [k for k in self.tracks if k[1] in targets]:
            track = self.tracks.pop(key)
            self.armed.discard(key)
            if track.alert_id is not None:
                self.open.pop(track.alert_id, None)
        for rec in [r for r in self.open.values() if r.node_id == node_id]:
            if rec.target_id in targets:
                del self.open[rec.id]

    def _lost(self, ours: AlertRecord, theirs: AlertRecord | None) -> None:
        """The database had another master's transition first: follow its alert."""
        self.open.pop(ours.id, None)
        key = (ours.rule_id or "", ours.target_id)
        track = self.tracks.get(key)
        if track is None or track.alert_id != ours.id:
            return
        self.fired -= 1
        if theirs is None:
            evaluator.resolved(track)
            return
        track.alert_id = theirs.id
        self.open[theirs.id] = theirs

    def sync(self, now: float) -> None:
        """Several masters: rules and silences as the database has them; the lease holder's
        nodes nobody holds and webhooks nobody sends."""
        for node_id in [n for n in self._held if not self.agents.is_online(n)]:
            self._release_node(node_id)  # taken by another master without a goodbye here
        try:
            with self.db.session() as s:
                self.webhooks.renew(s, self.webhooks.now(s))
                self._sync_rules(s)
                self._load_silences(s, now)
                if self.lease.held():
                    self._lead(s, now)
                s.commit()
        except SQLAlchemyError:
            log.warning("could not read alert rules, silences and nodes", exc_info=True)
            return
        if self.lease.held():
            self.webhooks.resend()
        else:
            for node_id in list(self._leading):
                self._release_node(node_id)
            self._leading.clear()

    def _sync_rules(self, s: Session) -> None:
        versions = {
            rule_id: updated
            for rule_id, updated in s.execute(
                select(models.AlertRule.id, models.AlertRule.updated_at)
            )
        }
        for rule_id in [r for r in self.rules if r not in versions]:
            self.remove_rule(rule_id)
        changed = [r for r, v in versions.items() if self._rule_versions.get(r) != v]
        if changed:
            for row in s.scalars(select(models.AlertRule).where(models.AlertRule.id.in_(changed))):
                self.set_rule(row)

    def _lead(self, s: Session, now: float) -> None:
        """The lease holder judges the nodes no online master holds: lost once nobody has held
        them for a while (their agents move to another master within seconds)."""
        rows = s.execute(select(models.Node.id, models.Node.master_id).where(~models.Node.revoked))
        unheld = set()
        for node_id, master_id in rows:
            if self.agents.holder(node_id, master_id) is not None:
                self._planned.discard(node_id)  # back since its goodbye
            elif node_id not in self._planned:
                unheld.add(node_id)
        for node_id in [n for n in self._leading if n not in unheld]:
            del self._leading[node_id]
            if node_id not in self._held:
                self._release_node(node_id)
        new = [n for n in unheld if n not in self._leading]
        if new:
            for node_id in new:
                self._leading[node_id] = now
            self._adopt(s, new, nodes_only=True)
        self._close_orphans(s, now)
        judge_from = self._started + STARTUP_GRACE
        for node_id, since in self._leading.items():
            if now - since < HANDOVER_GRACE or now < judge_from:
                continue
            for rule in self._nodes:
                if applies_node(rule, node_id, self.directory):
                    self._observe_state(rule, node_id, "offline", now)

    def _close_orphans(self, s: Session, now: float) -> None:
        """Open alerts whose rule was deleted or disabled resolve, wherever their target is
        (the masters evaluating a target resolve its alerts themselves; the others' wait)."""
        rule = models.AlertRule
        live = exists().where(rule.id == models.Alert.rule_id, rule.enabled)
        q = select(models.Alert).where(models.Alert.state == "firing", ~live)
        busy = self.outbox.pending_ids()
        for row in s.scalars(q):
            if row.id in self.open or row.id in busy:
                continue
            rec = AlertRecord.from_row(row)
            rec.state, rec.resolved_at = "resolved", now
            self.outbox.emit("resolved", rec, None)

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
