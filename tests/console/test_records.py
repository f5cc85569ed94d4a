"""Audit, users, logs and alerts services: against a real master where it has the endpoints, and
against a stand-in for our own client (documented contract) where the master does not yet."""

from __future__ import annotations

import csv
import io

import pytest

from console.client import ClientError
from console.schemas import Alert, AlertRule, LogFile
from console.services.records import AlertsService, AuditService, LogsService, UsersService
from console.services.session import Session
from tests.console.conftest import until
from tests.support import ADMIN_PASSWORD


@pytest.fixture
async def session(shared_master):
    s = Session()
    await s.login(shared_master.url, "admin", ADMIN_PASSWORD)
    yield s
    await s.logout(quiet=True)


async def test_audit_filters_and_csv_export(session, tmp_path):
    audit = AuditService(session)
    await audit.load({"actor": "admin", "limit": 50})
    rows = audit.model.rows()
    assert rows and all(r["actor"] == "admin" for r in rows)
    out = tmp_path / "audit.csv"
    await audit.export_csv(str(out))
    table = list(csv.reader(io.StringIO(out.read_text())))
    assert table[0][:3] == ["ts", "actor", "action"]
    assert {r[1] for r in table[1:]} == {"admin"}


async def test_users_create_and_delete_and_a_clear_refusal(session):
    users = UsersService(session)
    await users.reload()
    assert users.model.row("admin") is not None
    await users.create("ops1", "long-enough-pw", "operator")
    assert users.model.row("ops1") is None  # queued for the next tick
    users.model.flush()
    assert users.model.row("ops1")["role"] == "operator"
    await users.create("ops1", "long-enough-pw", "operator")  # exists: said in words
    from console import message

    assert "already exists" in message.bridge().history[-1][1]
    await users.delete("ops1")
    users.model.flush()
    assert users.model.row("ops1") is None
    await users.delete("admin")  # yourself: refused, and admin is still there
    assert "cannot delete yourself" in message.bridge().history[-1][1]
    await users.reload()
    assert users.model.row("admin") is not None


class ContractClient:
    """Answers the documented logs and alerts endpoints (API.md) the way a newer master does."""

    def __init__(self) -> None:
        self.text = "line 1\n"
        self.acked: list[str] = []
        self.rules: list[AlertRule] = []
        self.token = "t"

    async def logs(self, instance_id):
        return [
            LogFile(name="stdout", path="/x/stdout.log", size=7),
            LogFile(name="Access Log", size=0),
        ]

    async def log_text(self, instance_id, name, tail_bytes=65536):
        return self.text

    async def alert_rules(self):
        return self.rules

    async def create_alert_rule(self, body):
        rule = AlertRule(id=f"r{len(self.rules) + 1}", **body)
        self.rules.append(rule)
        return rule

    async def alerts(self, state=None, since=None):
        return [Alert(id="a1", rule_id="r1", target="instance=i1", value=93.5, state="firing")]

    async def ack_alert(self, alert_id):
        self.acked.append(alert_id)

    async def silences(self):
        raise ClientError("no such endpoint", status=404, code="not_found")

    async def subscribe(self, keys):
        pass


async def test_logs_tail_follow_and_live_chunks():
    session = Session()
    session.client = ContractClient()
    logs = LogsService(session, poll_ms=50)
    files: list[list] = []
    replaced: list[str] = []
    appended: list[str] = []
    logs.files_listed.connect(lambda iid, f: files.append(f))
    logs.text_replaced.connect(replaced.append)
    logs.text_appended.connect(appended.append)
    await logs.list_files("i1")
    assert [f["name"] for f in files[-1]] == ["stdout", "Access Log"]
    await logs.open("i1", "stdout")
    assert replaced == ["line 1\n"]
    await logs.follow(True)
    session.client.text = "line 1\nline 2\n"
    await until(lambda: appended == ["line 2\n"], what="polled tail appended")
    session.dispatch("log", {"instance_id": "i1", "name": "stdout", "text": "line 3\n"})
    session.dispatch("log", {"instance_id": "i1", "name": "stderr", "text": "not ours\n"})
    assert appended == ["line 2\n", "line 3\n"]
    # The master's log_chunk shape: `data`, `reset` after a rotation, `error` when it stops.
    session.dispatch(
        "log",
        {"instance_id": "i1", "name": "stdout", "offset": 0, "data": "fresh\n", "reset": True},
    )
    assert replaced[-1] == "fresh\n"
    session.dispatch(
        "log", {"instance_id": "i1", "name": "stdout", "error": "the file became a symlink"}
    )
    assert not logs.following
    from console import message

    assert "the file became a symlink" in message.bridge().history[-1][1]
    await logs.follow(False)
    assert not logs.following


async def test_alerts_rules_ack_and_firing_events():
    session = Session()
    client = ContractClient()
    session.client = client
    alerts = AlertsService(session, tick_ms=0)
    fired: list[dict] = []
    alerts.fired.connect(fired.append)
    await alerts.save_rule(
        {"name": "hot", "metric": "cpu_percent", "op": ">", "threshold": 90, "for_seconds": 5}
    )
    await alerts.reload()
    assert alerts.rules.row("r1")["name"] == "hot"
    assert alerts.alerts.row("a1")["rule_name"] == "hot"
    assert alerts.available == {"alerts": True, "silences": False}
    await alerts.ack(["a1"])
    alerts.alerts.flush()
    assert client.acked == ["a1"] and alerts.alerts.row("a1")["acked"] is True
    session.dispatch("alert", {"id": "a2", "rule_id": "r1", "state": "firing", "target": "node=n1"})
    session.dispatch("alert", {"id": "a2", "rule_id": "r1", "state": "firing", "target": "node=n1"})
    assert [a["id"] for a in fired] == ["a2"]  # told once, not per repeat
    alerts.alerts.flush()
    assert alerts.alerts.row("a2")["rule_name"] == "hot"


class SlowFleetClient:
    """Holds the package list back until told, like a master answering during an upload."""

    token = "t"

    def __init__(self) -> None:
        import asyncio

        self.gate = asyncio.Event()

    async def nodes(self):
        return []

    async def instances(self):
        return []

    async def systems(self):
        return []

    async def packages(self):
        await self.gate.wait()
        return []


async def test_an_event_during_a_reload_is_not_lost():
    from console.services.fleet import FleetService

    session = Session()
    client = SlowFleetClient()
    session.client = client
    fleet = FleetService(session, tick_ms=0)
    task = fleet.reload()
    await until(lambda: fleet._reloading == 1, what="reload fetching")
    pkg = {
        "id": "p1",
        "name": "late",
        "version": "1",
        "description": "",
        "os": None,
        "sha256": "0" * 64,
        "size": 1,
        "uploaded_at": "2026-01-01T00:00:00Z",
        "manifest": {},
    }
    session.dispatch("package", pkg)
    fleet.packages.flush()
    assert fleet.packages.row("p1") is not None  # shown at once
    client.gate.set()
    await task
    fleet.packages.flush()
    assert fleet.packages.row("p1") is not None  # and still there on top of the older snapshot
