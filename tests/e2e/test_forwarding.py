"""Two masters on one PostgreSQL database and one S3 bucket, an agent held by master B, and a
console on master A: A's event stream carries the node's and the instance's live metrics and
the lines the service writes to a followed log, as B's does; after B is killed and the agent
moves to A, the same subscription keeps delivering (now from A's own agent link)."""

from __future__ import annotations

import contextlib
import json
import statistics
import time
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from master.services.peer_secret import PEER_HEADER, SECRET_HEADER
from tests.e2e.batch_support import deploy_all, system_with_modules
from tests.e2e.test_failover import holder
from tests.e2e.test_s3_store import s3_flags
from tests.support import EventStream, Master, build_package, start_masters, wait_for

pytestmark = pytest.mark.slow

TALKER = """\
import sys, time
n = 0
while True:
    n += 1
    print("line %d" % n, flush=True)
    time.sleep(0.2)
"""


class TimedStream(EventStream):
    """An event stream that also notes when each event arrived (monotonic seconds)."""

    def __init__(self, master_url: str, token: str, keys: list[str]) -> None:
        self.arrived: list[tuple[float, dict[str, Any]]] = []
        super().__init__(master_url, token)
        self.send({"subscribe": keys})

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # the master went away
            for raw in self.ws:
                event = json.loads(raw)
                with self._lock:
                    self.events.append(event)
                    self.arrived.append((time.monotonic(), event))

    def samples(self, ident: str) -> dict[str, float]:
        """Sample timestamp -> when it arrived, for one node or instance."""
        with self._lock:
            return {
                e["data"]["ts"]: at
                for at, e in self.arrived
                if e["topic"] == "metrics" and e["data"]["id"] == ident
            }

    def text(self, iid: str) -> str:
        chunks = [d for d in self.topic("log") if d["instance_id"] == iid and "data" in d]
        return "".join(d["data"] for d in chunks)


def peer_stream_status(master_url: str, headers: dict[str, str]) -> int:
    """The HTTP status a peer's event stream request gets (101: let in)."""
    url = master_url.replace("http://", "ws://") + "/api/v1/events"
    try:
        with connect(url, additional_headers=headers):
            return 101
    except InvalidStatus as exc:
        assert json.loads(exc.response.body)["error"]["code"] == "unauthenticated"
        return exc.response.status_code


def lines_after(text: str, n: int) -> bool:
    """The log shows a line numbered above `n`."""
    return any(int(w[5:]) > n for w in text.splitlines() if w.startswith("line "))


def test_live_metrics_and_a_followed_log_of_a_node_on_another_master(
    agent_factory, pg_cluster, pg_migrated, s3_server, tmp_path
):
    url = pg_cluster.create_database(template=pg_migrated)
    flags = ["--db-url", url, *s3_flags(s3_server, "forwarding")]
    a, b = (Master(tmp_path / name, extra=flags) for name in ("a", "b"))
    streams: list[EventStream] = []
    try:
        ids = start_masters([a, b])
        api_a, api_b = a.api(), b.api()
        refused = peer_stream_status(a.url, {PEER_HEADER: ids[b], SECRET_HEADER: "guess"})
        assert refused == 401
        maker = next(m for m in (a, b) if (m.data_dir / "join-token").exists())
        extra = ["--master", f"{b.url},{a.url}", "--metrics-interval", "0.5"]
        agent = agent_factory(b, extra=extra, token=maker.join_token)
        node_id = agent.start_and_wait(api_b)
        wait_for(lambda: holder(api_a, node_id) == ids[b], 30, what="A sees B holding the node")

        # The service runs on the node B holds (commands go to B: routing them is not this test's).
        api_b.upload(build_package(tmp_path / "pkgs", name="talker", script=TALKER))
        _, modules = system_with_modules(api_b, "fwd", [{"name": "t", "package": "talker"}])
        [iid] = deploy_all(api_b, [(modules["t"], node_id)], 60)
        api_b.post(f"/instances/{iid}/start")
        wait_for(lambda: api_b.get(f"/instances/{iid}")["state"] == "running", 60, what="start")

        keys = [f"metrics:{node_id}", f"metrics:{iid}", f"log:{iid}:stdout"]
        on_a = TimedStream(a.url, api_a.token or "", keys)
        on_b = TimedStream(b.url, api_b.token or "", keys[:2])  # the same samples, at the source
        streams += [on_a, on_b]
        wait_for(lambda: len(on_a.samples(node_id)) >= 2, 30, what=f"node samples on A\n{a.tail()}")
        wait_for(lambda: len(on_a.samples(iid)) >= 2, 30, what="instance samples on A")
        wait_for(lambda: "line " in on_a.text(iid), 30, what=f"log lines on A\n{b.tail()}")
        # The history is in B's memory: A asks B for it.
        for path in (f"/nodes/{node_id}/metrics", f"/instances/{iid}/metrics"):
            assert api_a.get(path, params={"seconds": 60})["samples"], path
        sample = next(d for d in on_a.topic("metrics") if d["id"] == iid)
        assert sample["kind"] == "instance" and sample["node_id"] == node_id
        assert {"cpu_percent", "rss_bytes"} <= set(sample)
        assert not [d for d in on_a.topic("log") if d.get("error")], on_a.topic("log")
        tail = api_b.request("GET", f"/instances/{iid}/logs/stdout", expect=200).text
        written = max(int(w[5:]) for w in tail.splitlines() if w.startswith("line "))
        wait_for(lambda: lines_after(on_a.text(iid), written), 30, what="lines written later")
        added = [
            at - direct
            for ident in (node_id, iid)
            for ts, direct in on_b.samples(ident).items()
            if (at := on_a.samples(ident).get(ts)) is not None
        ]
        assert added, "no sample seen on both masters"
        print(
            f"\nforwarded sample, added latency over {len(added)}: median "
            f"{statistics.median(added) * 1000:.2f} ms, max {max(added) * 1000:.2f} ms"
        )
        # Each sample once: forwarded, never also published by A itself.
        ts_list = [d["ts"] for d in on_a.topic("metrics") if d["id"] == node_id]
        assert len(ts_list) == len(set(ts_list))

        # B dies; the agent moves to A, and the subscription is served from A's own link.
        b.kill9()
        moved = time.monotonic()
        wait_for(lambda: holder(api_a, node_id) == ids[a], 30, what="the node on A")
        shown = on_a.text(iid)
        last = max(int(w[5:]) for w in shown.splitlines() if w.startswith("line "))
        wait_for(
            lambda: any(at > moved for at in on_a.samples(node_id).values()),
            30,
            what=f"node samples after the move\n{a.tail()}",
        )
        wait_for(lambda: any(at > moved for at in on_a.samples(iid).values()), 30, what="instance")
        wait_for(lambda: lines_after(on_a.text(iid), last), 30, what="log lines after the move")
        print(f"after kill -9 of B: samples again on A after {time.monotonic() - moved:.2f} s")
    finally:
        for stream in streams:
            stream.close()
        for m in (a, b):
            m.stop()
