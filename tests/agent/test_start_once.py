"""A second start of an instance already starting or running (a re-drive after a reconnect has a
new command id) starts no second process: the real agent's link and supervisor, real children."""

import json
from pathlib import Path
from typing import cast

import psutil

from agent.credential import Credential
from agent.executor.launch import ENV_INSTANCE_ID
from agent.link import Link
from agent.wsclient import ClientConnection
from tests.agent.test_states import Walk, until


class _Sent:
    def __init__(self) -> None:
        self.texts: list[str] = []

    async def send(self, text: str) -> None:
        self.texts.append(text)


def _processes(iid: str) -> list[int]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            if proc.environ().get(ENV_INSTANCE_ID) == iid:
                found.append(proc.pid)
        except (psutil.Error, OSError):
            pass
    return found


async def test_two_starts_of_one_instance_with_two_ids_start_one_process(tmp_path: Path) -> None:
    walk = Walk(tmp_path)
    sup = walk.supervisor()
    try:
        iid = await walk.deploy(sup)
        link = Link(Credential("http://127.0.0.1:1", "n1", "s"), sup, tmp_path)
        sent = _Sent()
        link.ws = cast(ClientConnection, sent)

        def start(cmd_id: str) -> None:
            link._dispatch(json.dumps({"type": "start", "id": cmd_id, "instance_id": iid}))

        start("master-a.1f2e3d.1")  # through the master that died
        start("master-b.4c5b6a.1")  # the survivor's re-drive, while the first is under way
        await until(lambda: len(sent.texts) == 2, "both answers")
        pid = sup.get(iid).pid
        start("master-b.4c5b6a.2")  # and once it runs
        await until(lambda: len(sent.texts) == 3, "the third answer")
        assert [json.loads(t)["ok"] for t in sent.texts] == [True] * 3, sent.texts
        assert _processes(iid) == [pid] and sup.get(iid).pid == pid
        await sup.stop(iid)
        await sup.close()
    finally:
        walk.cleanup()
