"""`gdos-master` / `python -m master`: serve the API, optionally with a local agent."""

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import uvicorn

from master.app import create_app
from master.cli import parse_args, settings_from_args
from master.config import Settings
from master.server import NotifyingServer, guarded_protocol, tune_allocator
from master.storage import open_store
from protocol import __version__
from protocol.frozen import child_environ, version_text

log = logging.getLogger("gdos.master")


def agent_command(settings: Settings, work_dir: Path) -> list[str]:
    """How to start the local agent: the frozen sibling binary, or this Python's `-m agent`."""
    if getattr(sys, "frozen", False):
        exe = Path(sys.executable).with_name("gdos-agent" + (".exe" if os.name == "nt" else ""))
        base = [str(exe)]
    else:
        base = [sys.executable, "-m", "agent"]
    token = settings.join_token_file.read_text().strip()
    return [*base, "--master", settings.base_url, "--token", token, "--work-dir", str(work_dir)]


def print_banner(settings: Settings, with_agent: bool) -> None:
    pw = settings.admin_password_file
    lines = [
        f"GDOS master {__version__} listening on {settings.base_url}",
        f"  data directory : {settings.data_dir}",
        f"  admin password : {pw if pw.exists() else '(given with --admin-password)'}",
        f"  join token     : {settings.join_token_file}",
    ]
    if with_agent:
        lines.append(f"  local agent    : work dir {settings.data_dir / 'agent'}")
    lines.append("  stop with Ctrl-C (services keep running and are re-adopted at the next start)")
    print("\n".join(lines), flush=True)


async def serve(settings: Settings, with_agent: bool) -> int:
    try:
        await open_store(settings)  # a misconfigured bucket: one clear line, before listening
    except SystemExit as exc:
        print(exc, file=sys.stderr, flush=True)
        return 2
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        http=guarded_protocol(),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        ssl_certfile=str(settings.tls_cert) if settings.tls_cert else None,
        ssl_keyfile=str(settings.tls_key) if settings.tls_key else None,
        ws_max_size=8 << 20,
        access_log=settings.log_level == "debug",
        timeout_graceful_shutdown=5,
    )
    services = app.state.services
    server = NotifyingServer(config, on_exit=lambda: setattr(services, "stopping", True))
    # uvicorn re-raises the signal that stopped it once it is done serving; with the default
    # handlers that kills this process before the local agent is stopped below. Handlers that
    # only note the signal let the cleanup run (uvicorn installs its own while serving).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():
        await asyncio.sleep(0.05)
    if serving.done():
        await serving
        return 1
    agent: subprocess.Popen[bytes] | None = None
    print_banner(settings, with_agent)
    if with_agent:
        work_dir = settings.data_dir / "agent"
        agent = subprocess.Popen(agent_command(settings, work_dir), env=child_environ())
    try:
        await serving
    finally:
        if agent is not None and agent.poll() is None:
            agent.terminate()
            try:
                agent.wait(10)
            except subprocess.TimeoutExpired:
                agent.kill()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["restore"]:
        from master.restore_cli import main as restore_main

        return restore_main(argv[1:])
    args = parse_args(argv)
    if args.version:
        print(version_text("gdos-master"))
        return 0
    settings = settings_from_args(args)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    tune_allocator()  # before the first request: uploads read 1 MiB at a time
    try:
        return asyncio.run(serve(settings, args.with_agent))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
