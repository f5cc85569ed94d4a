"""`gdos-agent` / `python -m agent`: enrol once, then keep this node managed."""

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

from agent import autostart, credential, local_health, logrotate
from agent.credential import Credential, EnrollmentRefused
from agent.executor import deploy
from agent.executor.supervisor import Supervisor
from agent.hostinfo import host_info
from agent.http import Http, HttpError
from agent.link import Link
from agent.monitor import Monitor
from agent.state import StateFile
from protocol.frozen import version_text
from protocol.messages import Config, PackageRef
from protocol.seedargs import normalize_seed_args

log = logging.getLogger("gdos.agent")

STATE_FILE = "agent-state.json"


def _env(name: str, default: str | None) -> str | None:
    return os.environ.get("GDOS_AGENT_" + name.upper().replace("-", "_"), default)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="gdos-agent",
        description="GDOS agent: runs and watches the services the master places on this host.",
        epilog="Flags can also be set with GDOS_AGENT_<FLAG> (e.g. GDOS_AGENT_MASTER).",
    )
    p.add_argument("--version", action="store_true", help="print version and build info, exit")
    p.add_argument("--master", default=_env("master", "http://127.0.0.1:8080"), help="master URL")
    p.add_argument("--token", default=_env("token", None), help="join token (first start only)")
    p.add_argument("--work-dir", type=Path, default=Path(_env("work-dir", "./instances") or "."))
    p.add_argument(
        "--port",
        type=int,
        default=_env("port", None),
        help="serve GET /healthz on 127.0.0.1:PORT (off unless given)",
    )
    p.add_argument(
        "--autostart",
        choices=["1", "0", "-1"],
        default=None,
        help="1: install and enable the boot-time service (systemd / Task Scheduler / launchd), "
        "start it, exit; 0: stop, disable and remove it, exit; -1: leave it as is (default)",
    )
    p.add_argument(
        "--autostart-print",
        nargs="?",
        const="auto",
        choices=["auto", *autostart.OS_CHOICES],
        metavar="OS",
        help="print the unit / task / plist --autostart 1 would install (this OS, or linux, "
        "windows, macos) and exit",
    )
    p.add_argument(
        "--ca-cert",
        type=Path,
        default=_env("ca-cert", None),
        help="CA bundle to verify an https master",
    )
    p.add_argument(
        "--metrics-interval",
        type=float,
        default=float(_env("metrics-interval", "1.0") or 1.0),
        help="seconds between samples of process and node figures (0: off; the master may override)",
    )
    p.add_argument(
        "--log-level",
        default=_env("log-level", "info"),
        choices=["debug", "info", "warning", "error"],
    )
    return p


KNOWN_FLAGS = [a.option_strings[0].lstrip("-") for a in build_parser()._actions if a.option_strings]


def ssl_context(ca_cert: Path | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=str(ca_cert)) if ca_cert else None


async def obtain_credential(args: argparse.Namespace, http: Http) -> Credential:
    work_dir: Path = args.work_dir
    cred = credential.load(work_dir)
    if cred is not None:
        if args.master and cred.master != args.master.rstrip("/"):
            cred = Credential(args.master.rstrip("/"), cred.node_id, cred.node_secret)
            credential.save(work_dir, cred)
        return cred
    if not args.token:
        raise EnrollmentRefused(
            f"this node is not enrolled yet ({work_dir / credential.CREDENTIAL_FILE} is missing): "
            "start it once with --token <join token> (see the master's join-token file)"
        )
    delay = 1.0
    while True:
        try:
            host = await asyncio.to_thread(host_info, args.master, work_dir)
            cred = await credential.enroll(http, args.master.rstrip("/"), args.token, host)
        except HttpError as exc:
            log.warning(
                "cannot reach %s to enrol (%s); retrying in %.0f s", args.master, exc, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30)
            continue
        credential.save(work_dir, cred)
        log.info("enrolled as node %s", cred.node_id)
        return cred


def enrol_once(args: argparse.Namespace, timeout: float = 60.0) -> None:
    """Enrol now (for `--autostart 1`): the boot-time command then needs no join token."""

    async def go() -> None:
        http = Http(ssl_context(args.ca_cert))
        await asyncio.wait_for(obtain_credential(args, http), timeout)

    args.work_dir = Path(args.work_dir).absolute()
    try:
        asyncio.run(go())
    except EnrollmentRefused as exc:
        raise autostart.AutostartError(str(exc)) from None
    except TimeoutError:
        raise autostart.AutostartError(
            f"could not reach the master at {args.master} to enrol within {timeout:.0f} s"
        ) from None


async def run(args: argparse.Namespace) -> int:
    work_dir: Path = args.work_dir.absolute()
    args.work_dir = work_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    ctx = ssl_context(args.ca_cert)
    http = Http(ctx)
    try:
        cred = await obtain_credential(args, http)
    except EnrollmentRefused as exc:
        log.error("%s", exc)
        return 2

    link: Link | None = None

    async def fetch(ref: PackageRef, dest: Path) -> None:
        await deploy.download(http, cred.master, cred.node_secret, ref, dest)

    def report(rep: object) -> None:
        if link is not None:
            link.report(rep)  # type: ignore[arg-type]

    supervisor = Supervisor(work_dir, StateFile(work_dir / STATE_FILE), fetch, report)
    await supervisor.load()
    link = Link(cred, supervisor, work_dir, ctx)
    monitor = Monitor(supervisor, work_dir, link.send_metrics, args.metrics_interval)
    link.load_source = monitor.load

    def on_config(cfg: Config) -> None:
        monitor.set_interval(
            cfg.metrics_interval if cfg.metrics_interval is not None else args.metrics_interval
        )

    link.on_config = on_config
    server = None
    if args.port is not None:
        server = await local_health.serve(
            int(args.port),
            lambda: {
                "status": "ok",
                "connected": link.connected.is_set() if link else False,
                "node_id": cred.node_id,
                "instances": len(supervisor.instances),
            },
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows
            loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(link.run_forever())
    sampler = asyncio.create_task(monitor.run())
    stopper = asyncio.create_task(stop.wait())
    rotator = asyncio.create_task(logrotate.rotate_forever(supervisor))
    await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    log.info("agent stopping; services keep running and are re-adopted at the next start")
    for task in (runner, sampler, stopper, rotator):
        task.cancel()
    await asyncio.gather(runner, sampler, stopper, rotator, return_exceptions=True)
    await link.close()
    await supervisor.close()
    if server is not None:
        server.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(
        normalize_seed_args(sys.argv[1:] if argv is None else argv, KNOWN_FLAGS)
    )
    if args.version:
        print(version_text("gdos-agent"))
        return 0
    if args.autostart_print is not None:
        return autostart.print_definition(args, args.autostart_print)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.autostart in ("1", "0"):
        return autostart.apply(args, enrol=lambda: enrol_once(args))
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
