"""The running agent: enrol if needed, then keep the link, the supervisor and the monitor going.

Imported by `agent.__main__` only once the flags are parsed, so that `agent.tls` can keep
OpenSSL out before asyncio, urllib and friends are imported.
"""

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from agent import autostart, credential, local_health, logrotate, tls
from agent.credential import Credential, EnrollmentRefused
from agent.executor import deploy
from agent.executor.supervisor import Supervisor
from agent.flags import parse_masters
from agent.hostinfo import host_info
from agent.http import Http, HttpError
from agent.link import Link
from agent.monitor import Monitor
from agent.state import StateFile
from protocol import worklock
from protocol.messages import Config, InstanceReport, PackageRef

log = logging.getLogger("gdos.agent")

STATE_FILE = "agent-state.json"


async def obtain_credential(args: argparse.Namespace, http: Http) -> Credential:
    """The node's credential, with the master URLs of `--master` (one, or several separated by
    commas); enrolled with the first master that answers when there is none yet."""
    work_dir: Path = args.work_dir
    urls = parse_masters(args.master or "")
    cred = credential.load(work_dir)
    if cred is not None:
        if urls and cred.urls != urls:
            cred = Credential(urls[0], cred.node_id, cred.node_secret, urls)
            credential.save(work_dir, cred)
        return cred
    if not args.token:
        raise EnrollmentRefused(
            f"this node is not enrolled yet ({work_dir / credential.CREDENTIAL_FILE} is missing): "
            "start it once with --token <join token> (see the master's join-token file)"
        )
    if not urls:
        raise EnrollmentRefused("--master names no master URL: give it one, or several with commas")
    delay = 1.0
    attempt = 0
    while True:
        master = urls[attempt % len(urls)]
        attempt += 1
        try:
            host = await asyncio.to_thread(host_info, master, work_dir)
            cred = await credential.enroll(http, master, args.token, host)
        except HttpError as exc:
            if attempt % len(urls):
                log.warning("cannot reach %s to enrol (%s); trying the next master", master, exc)
                continue
            log.warning("cannot reach %s to enrol (%s); retrying in %.0f s", master, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30)
            continue
        cred = Credential(urls[0], cred.node_id, cred.node_secret, urls)
        credential.save(work_dir, cred)
        log.info("enrolled as node %s with %s", cred.node_id, master)
        return cred


def enrol_once(args: argparse.Namespace, timeout: float = 60.0) -> None:
    """Enrol now (for `--autostart 1`): the boot-time command then needs no join token."""

    async def go() -> None:
        http = Http(tls.context(args.ca_cert))
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
    """Run until SIGINT or SIGTERM (0), or until the link to the master fails (1: the service
    manager starts the agent again); 2 when this node cannot enrol."""
    work_dir: Path = args.work_dir.absolute()
    args.work_dir = work_dir
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock = worklock.acquire(work_dir)
    except worklock.WorkDirBusy as exc:
        log.error("%s", exc)
        return 3
    try:
        return await _run(args, work_dir)
    finally:
        worklock.release(lock)


async def _run(args: argparse.Namespace, work_dir: Path) -> int:
    ctx = tls.context(args.ca_cert)
    http = Http(ctx)
    try:
        cred = await obtain_credential(args, http)
    except EnrollmentRefused as exc:
        log.error("%s", exc)
        return 2

    link: Link | None = None

    async def fetch(ref: PackageRef, dest: Path) -> None:
        master = link.master if link is not None else cred.master  # the one connected to
        await deploy.download(
            http, master, cred.node_secret, ref, dest, args.download_retry_seconds
        )

    def report(rep: InstanceReport) -> None:
        if link is not None:
            link.report(rep)

    supervisor = Supervisor(
        work_dir,
        StateFile(work_dir / STATE_FILE),
        fetch,
        report,
        default_user=args.default_user,
        log_roots=args.log_roots,
    )
    await supervisor.load()
    link = Link(cred, supervisor, work_dir, ctx)
    monitor = _monitor(args, supervisor, link)
    server = None
    if args.port is not None:
        server = await _health_endpoint(int(args.port), link, cred, supervisor)
    try:
        return await _serve(link, monitor, supervisor)
    finally:
        if server is not None:
            server.close()


def _monitor(args: argparse.Namespace, supervisor: Supervisor, link: Link) -> Monitor:
    """The sampler, at the master's interval when it sets one, else at --metrics-interval."""
    monitor = Monitor(supervisor, args.work_dir, link.send_metrics, args.metrics_interval)
    link.load_source = monitor.load

    def on_config(cfg: Config) -> None:
        monitor.set_interval(
            cfg.metrics_interval if cfg.metrics_interval is not None else args.metrics_interval
        )

    link.on_config = on_config
    return monitor


async def _health_endpoint(
    port: int, link: Link, cred: Credential, supervisor: Supervisor
) -> asyncio.Server:
    return await local_health.serve(
        port,
        lambda: {
            "status": "ok",
            "connected": link.connected.is_set(),
            "node_id": cred.node_id,
            "instances": len(supervisor.instances),
        },
    )


async def _serve(link: Link, monitor: Monitor, supervisor: Supervisor) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # Windows
            loop.add_signal_handler(sig, stop.set)
    runner = asyncio.create_task(link.run_forever())
    sampler = asyncio.create_task(monitor.run())
    stopper = asyncio.create_task(stop.wait())
    rotator = asyncio.create_task(logrotate.rotate_forever(supervisor, active=monitor.active_since))
    await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    failed = runner.done() and not runner.cancelled() and runner.exception() is not None
    if failed:  # exit non-zero, so that the service manager starts the agent again
        log.error("the link to the master ended", exc_info=runner.exception())
    log.info("agent stopping; services keep running and are re-adopted at the next start")
    if not failed:
        await link.goodbye("the agent was stopped")
    for task in (runner, sampler, stopper, rotator):
        task.cancel()
    await asyncio.gather(runner, sampler, stopper, rotator, return_exceptions=True)
    await link.close()
    await supervisor.close()
    return 1 if failed else 0
