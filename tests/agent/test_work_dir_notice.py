"""An agent started without --work-dir says, in its log, where it keeps its files."""

import subprocess
import sys

from tests.support import child_env, free_port, wait_for


def test_without_work_dir_the_agent_names_the_folder_it_uses(tmp_path):
    log = tmp_path / "agent.log"
    master = f"http://127.0.0.1:{free_port()}"  # nobody there: it keeps trying to enrol
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "--master", master, "--token", "gdj_unused"],
            cwd=tmp_path,
            env=child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        expected = f"no --work-dir given: keeping this node's files in {tmp_path / 'instances'}"
        wait_for(lambda: expected in log.read_text(), timeout=30, what="the notice")
        wait_for((tmp_path / "instances").is_dir, timeout=30, what="the folder")
    finally:
        proc.terminate()
        proc.wait(15)
