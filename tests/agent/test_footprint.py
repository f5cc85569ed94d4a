"""What a running agent imports is what every host pays for in RSS (issue 9 compares it with
supervisord). Checked in a fresh interpreter: the import of the agent's entry point must not
pull in modules only some agents ever need."""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, Agent, Api, Master

# Each of these is imported where it is needed: the autostart backends (plistlib, ElementTree
# with pyexpat, ctypes for Windows' admin check), the master's stack (pydantic, SQLAlchemy,
# FastAPI) and httpx, which the agent replaced with urllib.
# OpenSSL (ssl, _hashlib) only when the link to the master is TLS (agent.tls), and of the
# websockets library only its sans-I/O protocol (agent.wsclient): not its asyncio, sync or
# legacy clients (the first imports ssl) nor compression.
ONLY_WHEN_NEEDED = ("plistlib", "xml", "pyexpat", "ctypes", "pydantic", "sqlalchemy", "httpx")
OPENSSL = ("ssl", "_ssl", "_hashlib")
WEBSOCKETS_IO = (
    "websockets.asyncio",
    "websockets.sync",
    "websockets.legacy",
    "websockets.extensions.permessage_deflate",
)


def loaded_after(code: str) -> list[str]:
    names = (*ONLY_WHEN_NEEDED, *OPENSSL, *WEBSOCKETS_IO)
    check = f"import json, sys; print(json.dumps([m for m in {names!r} if sys.modules.get(m)]))"
    out = subprocess.run(
        [sys.executable, "-c", f"{code}; {check}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return list(json.loads(out.stdout))


def test_the_agent_does_not_import_what_only_some_agents_need() -> None:
    # What main() does for a plain-http master: the entry point is imported first, and must
    # leave OpenSSL out so that forgo() can still keep it out of the running agent.
    code = "import agent.__main__; from agent import tls; assert tls.forgo(); import agent.runtime"
    assert loaded_after(code) == []


def test_a_tls_agent_loads_ssl_and_nothing_else_extra() -> None:
    assert loaded_after("import agent.__main__, agent.runtime") == list(OPENSSL)


def mapped_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/<pid>/maps")
def test_a_running_plain_http_agent_never_maps_openssl(
    master: Master, api: Api, tmp_path: Path
) -> None:
    assert "libcrypto" in mapped_libraries(master.pid)  # the check can see it when it is there
    agent = Agent(master, tmp_path / "agent")
    try:
        agent.start_and_wait(api)
        maps = mapped_libraries(agent.pid)
        assert "libcrypto" not in maps and "libssl" not in maps
    finally:
        agent.stop()


def test_an_autostart_backend_still_loads_when_asked_for() -> None:
    from agent.autostart import backend_for
    from agent.autostart.command import agent_command

    command = agent_command("http://127.0.0.1:8080", ROOT / "work")
    assert backend_for("macos", command).name == "launchd"
    assert backend_for("windows", command).name == "Task Scheduler"


# Eight threads that allocate at once, then the number of glibc heaps besides the main one
# (each 64 MiB-aligned in the address space).
ARENAS = """
import os, sys, threading
from agent.limits import few_malloc_arenas
if sys.argv[1] == "capped":
    assert few_malloc_arenas()
barrier = threading.Barrier(8)
kept = []
def work():
    barrier.wait()
    kept.append([bytearray(2000) for _ in range(200)])
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
heaps = 0
for line in open("/proc/self/maps"):
    start, _, rest = line.partition("-")
    if int(start, 16) % (64 << 20) == 0 and len(line.split()) == 5:
        heaps += 1
print(heaps)
"""


def run_without_malloc_settings(code: str, mode: str) -> str:
    """What `code` prints in a fresh interpreter, with no MALLOC_* variable to tune glibc."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", code, mode],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc's malloc arenas",
)
def test_the_agent_caps_malloc_arenas_so_threads_leave_little_behind() -> None:
    def heaps(mode: str) -> int:
        return int(run_without_malloc_settings(ARENAS, mode))

    assert heaps("capped") <= 1  # the main arena and one more
    assert heaps("free") > 2  # what it would be: an arena per busy thread


# A 1 MiB block freed, then a 600 kB one: is the second one mapped on its own, or in the heap?
MAPPED_ALONE = """
import ctypes, sys
from agent.limits import steady_mmap_threshold
if sys.argv[1] == "steady":
    assert steady_mmap_threshold()
big = bytearray(1 << 20)  # mapped alone, then freed
del big
block = bytearray(b"x" * 600_000)
at = ctypes.addressof((ctypes.c_char * len(block)).from_buffer(block))
heap = next(line.split()[0] for line in open("/proc/self/maps") if line.rstrip().endswith("[heap]"))
low, high = (int(x, 16) for x in heap.split("-"))
print("heap" if low <= at < high else "mapped")
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc's mmap threshold",
)
def test_the_agent_keeps_large_blocks_out_of_the_heap_after_a_larger_one_was_freed() -> None:
    def where(mode: str) -> str:
        return run_without_malloc_settings(MAPPED_ALONE, mode)

    assert where("steady") == "mapped"  # given back to the system when freed
    assert where("free") == "heap"  # glibc's default: the threshold rose to 1 MiB
