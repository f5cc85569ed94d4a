"""The leader of several masters, with real masters on one PostgreSQL database and one S3 bucket:
three cold-starting masters elect one; another leads soon after a kill -9 and after a SIGSTOP;
the leader marks offline the node of a killed master whose agent does not come back; and a
batch start whose master is killed mid-way finishes on another, no instance started twice."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.e2e.batch_support import (
    deploy_all,
    read_events,
    service_package,
    system_with_modules,
    wait_operation,
)
from tests.e2e.test_s3_store import s3_flags
from tests.support import Api, Master, build_package, free_port, start_masters, wait_for

pytestmark = pytest.mark.slow


def leader(api: Api) -> str | None:
    """The leader as this master lists it (None: none, or more than one)."""
    leading = [m["id"] for m in api.get("/masters") if m["leader"]]
    return leading[0] if len(leading) == 1 else None


def test_three_masters_elect_one_leader_and_another_leads_after_a_kill_or_a_stop(
    agent_factory, pg_cluster, pg_migrated, s3_server, tmp_path
):
    url = pg_cluster.create_database(template=pg_migrated)
    flags = ["--db-url", url, *s3_flags(s3_server, "leader")]
    masters = [Master(tmp_path / name, extra=flags) for name in ("a", "b", "c")]
    stopped: Master | None = None
    try:
        ids = start_masters(masters)
        apis = {m: m.api() for m in masters}
        wait_for(lambda: leader(apis[masters[0]]) is not None, 30, what="a leader")
        first = leader(apis[masters[0]])
        assert all(leader(api) == first for api in apis.values())
        by_id = {i: m for m, i in ids.items()}

        # The leader holds a node whose agent knows no other master, with an instance on it.
        holder = by_id[first]
        maker = next(m for m in masters if (m.data_dir / "join-token").exists())
        agent = agent_factory(holder, token=maker.join_token)
        node_id = agent.start_and_wait(apis[holder])
        apis[holder].upload(build_package(tmp_path / "pkgs"))
        system = apis[holder].post("/systems", {"name": "lost"})
        module = apis[holder].post(
            f"/systems/{system['id']}/modules", {"name": "web", "package": "hello"}
        )
        iid = deploy_all(apis[holder], [(module["id"], node_id)])[0]

        # kill -9 the leader: another within a few seconds; it marks the node offline.
        since = time.time()
        holder.kill9()
        rest = [m for m in masters if m is not holder]
        watcher = apis[rest[0]]
        wait_for(lambda: leader(watcher) not in (None, first), 30, what="a new leader")
        took = time.time() - since
        second = leader(watcher)
        wait_for(
            lambda: (
                watcher.get(f"/nodes/{node_id}")["status"] == "offline"
                and watcher.get(f"/instances/{iid}")["state"] == "unknown"
            ),
            30,
            what="the dead master's node offline, its instance unknown",
        )
        lost = time.time() - since
        print(
            f"kill -9 of the leader: a new leader after {took:.2f} s, its node offline after {lost:.2f} s"
        )
        assert leader(apis[rest[1]]) == second

        # SIGSTOP the new leader: the last master leads once the server ends its session.
        stopped = by_id[second]
        last = next(m for m in rest if m is not stopped)
        since = time.time()
        os.kill(stopped.pid, signal.SIGSTOP)
        wait_for(lambda: leader(apis[last]) == ids[last], 30, what="the last master leading")
        print(f"SIGSTOP of the leader: a new leader after {time.time() - since:.2f} s")
        os.kill(stopped.pid, signal.SIGCONT)
        stopped = None
        woken = by_id[second]
        wait_for(
            lambda: "lost the leader lease" in woken.log_path.read_text(errors="replace"),
            30,
            what=f"the woken master finding its lease lost\n{woken.tail()}",
        )
        assert leader(apis[last]) == leader(apis[woken]) == ids[last]
    finally:
        if stopped is not None:
            os.kill(stopped.pid, signal.SIGCONT)
        for m in masters:
            m.stop()


def test_a_batch_start_whose_master_dies_mid_way_finishes_on_another_starting_nothing_twice(
    agent_factory, pg_cluster, pg_migrated, s3_server, tmp_path
):
    url = pg_cluster.create_database(template=pg_migrated)
    flags = ["--db-url", url, *s3_flags(s3_server, "takeover")]
    a, b = (Master(tmp_path / name, extra=flags) for name in ("a", "b"))
    try:
        ids = start_masters([a, b])
        api_a, api_b = a.api(), b.api()
        maker = next(m for m in (a, b) if (m.data_dir / "join-token").exists())
        agent = agent_factory(a, extra=["--master", f"{a.url},{b.url}"], token=maker.join_token)
        node_id = agent.start_and_wait(api_a)

        # Three levels; the second becomes healthy only a few seconds after its start.
        events = tmp_path / "events.log"
        ports = [free_port() for _ in range(3)]
        for name, port, extra in (
            ("db", ports[0], []),
            ("web", ports[1], ["--ready-after", "4"]),
            ("api", ports[2], []),
        ):
            manifest = {
                "args": ["--events", str(events), "--port", str(port), *extra],
                "health": {"tcp": port, "ready_timeout": 60},
            }
            api_a.upload(service_package(tmp_path / "pkgs", name, manifest))
        system_id, mods = system_with_modules(
            api_a,
            "shop",
            [
                {"name": "db", "package": "db", "start_order": 1},
                {"name": "web", "package": "web", "start_order": 2},
                {"name": "api", "package": "api", "start_order": 3},
            ],
        )
        deploy_all(api_a, [(mods[n], node_id) for n in ("db", "web", "api")])

        op_id = api_a.post(f"/systems/{system_id}/start", expect=202)["operation_id"]
        wait_for(
            lambda: ("web-1", "start") in read_events(events), 60, what="the second level begun"
        )
        since = time.time()
        a.kill9()  # mid-way: db done, web starting, api not begun
        wait_for(
            lambda: api_b.get(f"/operations/{op_id}")["master_id"] == ids[b],
            30,
            what="the operation taken over",
        )
        print(f"kill -9 of the driving master: taken over after {time.time() - since:.2f} s")
        op = wait_operation(api_b, op_id, 90)
        assert op["state"] == "succeeded", op
        assert op["resumed"] >= 1 and [s["state"] for s in op["steps"]] == ["done"] * 3
        starts = {
            n: len(read_events(events).get((n, "start"), [])) for n in ("db-1", "web-1", "api-1")
        }
        assert starts == {"db-1": 1, "web-1": 1, "api-1": 1}, starts
        for inst in api_b.get(f"/instances?system_id={system_id}"):
            assert inst["state"] == "running" and inst["health"] == "healthy", inst
    finally:
        for m in (a, b):
            m.stop()
