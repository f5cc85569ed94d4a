"""Two masters on one PostgreSQL database and one S3 bucket, and an agent given both URLs: each
master lists both, a third with the local store refuses to start, the agent keeps a master
whose loop is busy for longer than its liveness probe waits, and fails over after SIGSTOP
(told by the probe, before the pong deadline) and after kill -9 of its master, fenced: the
stopped master, woken up, marks nothing offline."""

from __future__ import annotations

import os
import re
import signal
import time
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from agent.link import ws_url
from master.__main__ import main as master_main
from master.db import models
from master.db.session import Database
from tests.e2e.test_s3_store import s3_flags
from tests.support import Api, Master, build_package, free_port, start_masters, wait_for

pytestmark = pytest.mark.slow

_LOST = re.compile(r"^(\S+ \S+) WARNING agent\.link: connection to (\S+) lost")
_STOPPED = re.compile(r"WARNING agent\.liveness: the master at (\S+) answers neither pings")


def holder(api: Api, node_id: str) -> str | None:
    """The master holding the node as this master sees it (None: offline)."""
    node = api.get(f"/nodes/{node_id}")
    return node["master_id"] if node["status"] == "online" else None


def noticed_after(log: Path, url: str, since: float) -> float | None:
    """Seconds from `since` (wall clock) to the agent's first "connection to URL lost" after it."""
    for line in log.read_text(errors="replace").splitlines():
        found = _LOST.match(line)
        if found and found.group(2) == url:
            at = datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if at >= since:
                return at - since
    return None


def test_an_agent_fails_over_between_two_masters_and_a_stale_one_marks_nothing(
    agent_factory, pg_cluster, pg_migrated, s3_server, tmp_path, capsys
):
    url = pg_cluster.create_database(template=pg_migrated)
    flags = ["--db-url", url, *s3_flags(s3_server, "failover")]
    a, b = (Master(tmp_path / name, extra=[*flags, "--debug-endpoints"]) for name in "ab")
    stopped = False
    try:
        ids = start_masters([a, b])
        api_a, api_b = a.api(), b.api()
        for api in (api_a, api_b):
            listed = {m["id"]: m for m in api.get("/masters")}
            assert set(listed) == set(ids.values())
            assert {m["status"] for m in listed.values()} == {"online"}
            assert listed[ids[a]]["url"] == a.url
        wait_for(
            lambda: sum(m["leader"] for m in api_a.get("/masters")) == 1, 30, what="one leader"
        )

        # A third master with its packages on its own disk refuses to join them.
        third = ["--data-dir", str(tmp_path / "third"), "--db-url", url]
        code = master_main(["--port", f"127.0.0.1:{free_port()}", *third])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert err[0].startswith("gdos-master: another master (") and "--store-type minio" in err[0]

        # The default join token is made once, by whichever master came first: its file is there.
        maker = next(m for m in (a, b) if (m.data_dir / "join-token").exists())
        extra = ["--master", f"{a.url},{b.url}"]
        agent = agent_factory(a, extra=extra, token=maker.join_token)
        node_id = agent.start_and_wait(api_a)
        wait_for(lambda: holder(api_b, node_id) == ids[a], 30, what="B sees A holding the node")
        port = free_port()
        api_a.upload(build_package(tmp_path / "pkgs", manifest={"args": ["--port", str(port)]}))
        system = api_a.post("/systems", {"name": "ha"})
        module = api_a.post(f"/systems/{system['id']}/modules", {"name": "web", "package": "hello"})
        iid = api_a.post("/instances", {"module_id": module["id"], "node_id": node_id})["id"]
        wait_for(lambda: api_a.get(f"/instances/{iid}")["state"] == "stopped", 60, what="deploy")
        api_a.post(f"/instances/{iid}/start")
        wait_for(lambda: api_a.get(f"/instances/{iid}")["state"] == "running", 60, what="start")

        # A busy loop (2.5 s: past the probe's 1 s + 1 s, within the 3.5 s pong deadline) is not
        # a stopped master: A's probe is answered from its own thread, and the node stays.
        since = time.time()
        for _ in range(2):
            api_a.request("POST", "/debug/stall", expect=204, params={"seconds": 2.5})
            time.sleep(1.0)
        assert noticed_after(agent.log_path, a.url, since) is None, agent.tail()
        assert holder(api_b, node_id) == ids[a]

        # SIGSTOP: A hangs with the connection open; the agent notices and moves to B.
        since = time.time()
        os.kill(a.pid, signal.SIGSTOP)
        stopped = True
        wait_for(lambda: holder(api_b, node_id) == ids[b], 30, what="the node on B")
        moved = time.time() - since
        noticed = noticed_after(agent.log_path, a.url, since)
        print(f"SIGSTOP: noticed after {noticed} s, online on B after {moved:.2f} s")
        assert noticed is not None and noticed < 10, agent.tail()
        # Left because its process stopped answering the liveness probe, not at the pong deadline.
        told = _STOPPED.findall(agent.log_path.read_text(errors="replace"))
        assert told == [ws_url(a.url)], agent.tail()
        wait_for(lambda: api_b.get(f"/instances/{iid}")["state"] == "running", 30, what="run")

        # A wakes up: its link is stale (epoch), so it marks neither the node nor its instance.
        os.kill(a.pid, signal.SIGCONT)
        stopped = False
        wait_for(
            lambda: "held by another master" in a.log_path.read_text(errors="replace"),
            30,
            what=f"A letting the node go\n{a.tail()}",
        )
        time.sleep(1.0)  # anything A would still write, written
        assert api_b.get(f"/instances/{iid}")["state"] == "running"
        wait_for(lambda: holder(api_a, node_id) == ids[b], 30, what="A sees B holding the node")
        db = Database(url)
        with db.session() as s:
            assert (
                s.scalar(select(models.Node.master_id).where(models.Node.id == node_id)) == (ids[b])
            )
        db.dispose()

        # kill -9: B's socket closes at once; the agent is back on A.
        since = time.time()
        b.kill9()
        wait_for(lambda: holder(api_a, node_id) == ids[a], 30, what="the node on A again")
        print(f"kill -9: online on A after {time.time() - since:.2f} s")
        wait_for(lambda: api_a.get(f"/instances/{iid}")["state"] == "running", 30, what="run")
    finally:
        if stopped:
            os.kill(a.pid, signal.SIGCONT)
        for m in (a, b):
            m.stop()
