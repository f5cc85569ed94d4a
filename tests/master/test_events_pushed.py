"""What the console used to pull after F5 now reaches the event stream: module, alert-rule and
audit changes (a real master, a real WebSocket)."""

from __future__ import annotations

from tests.support import Api, EventStream, Master, build_package, wait_for


def test_module_rule_and_audit_changes_are_pushed(shared_master: Master, shared_api: Api, tmp_path):
    api = shared_api
    api.upload(build_package(tmp_path, name="pushed"))
    stream = EventStream(shared_master.url, api.token or "")
    try:
        system = api.post("/systems", {"name": "pushed-sys"})
        module = api.post(
            f"/systems/{system['id']}/modules", {"name": "web", "package": "pushed", "env": {}}
        )
        api.request("PATCH", f"/modules/{module['id']}", expect=200, json={"start_order": 3})
        api.request("DELETE", f"/modules/{module['id']}", expect=204)
        wait_for(lambda: len(stream.topic("module")) >= 3, what="three module events")
        made, changed, gone = stream.topic("module")[-3:]
        assert made["id"] == module["id"] and made["system_id"] == system["id"]
        assert made["name"] == "web" and made["package"] == "pushed"
        assert changed["start_order"] == 3
        assert gone == {"id": module["id"], "system_id": system["id"], "deleted": True}

        rule = api.post(
            "/alert-rules",
            {"name": "pushed-cpu", "metric": "cpu_percent", "op": ">", "threshold": 80},
        )
        api.request("PATCH", f"/alert-rules/{rule['id']}", expect=200, json={"enabled": False})
        api.request("DELETE", f"/alert-rules/{rule['id']}", expect=204)
        wait_for(lambda: len(stream.topic("alert_rule")) >= 3, what="three rule events")
        made, changed, gone = [r for r in stream.topic("alert_rule") if r["id"] == rule["id"]]
        assert made["name"] == "pushed-cpu" and made["threshold"] == 80
        assert changed["enabled"] is False
        assert gone == {"id": rule["id"], "deleted": True}

        # Every audited call: the row as GET /audit has it, hash chain included.
        wait_for(
            lambda: any(a["action"] == "delete_rule" for a in stream.topic("audit")),
            what="the audit row of the last call",
        )
        rows = {r["id"]: r for r in api.get("/audit", params={"limit": 20})}
        for entry in stream.topic("audit"):
            assert rows.get(entry["id"]) == entry
        actions = [a["action"] for a in stream.topic("audit")]
        assert actions[-3:] == ["create_rule", "update_rule", "delete_rule"]
    finally:
        stream.close()


def test_validation_problems_name_their_kind(shared_api: Api):
    """The console words each problem from its `type` (what to change, next to the field)."""
    r = shared_api.request("POST", "/systems", json={"name": "has space"})
    assert r.status_code == 422
    [problem] = r.json()["error"]["details"]["problems"]
    assert problem["field"] == "name" and problem["type"] == "string_pattern_mismatch"
