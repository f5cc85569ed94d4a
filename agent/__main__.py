"""`gdos-agent` / `python -m agent`: enrol once, then keep this node managed."""

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from agent import autostart, tls
from agent.flags import DEFAULT_DOWNLOAD_RETRY_SECONDS, DEFAULT_LOG_ROOTS, parse_log_roots
from protocol.errors import GdosError
from protocol.frozen import version_text
from protocol.helpformat import DefaultsHelp
from protocol.seedargs import normalize_seed_args

DEFAULT_WORK_DIR = Path("instances")


def _env(name: str, default: str | None) -> str | None:
    return os.environ.get("GDOS_AGENT_" + name.upper().replace("-", "_"), default)


def build_parser() -> argparse.ArgumentParser:
    """Every flag of the agent, one `add_argument` each: long, but one flat list reads best."""
    p = argparse.ArgumentParser(
        prog="gdos-agent",
        description="GDOS agent: runs and watches the services the master places on this host.",
        epilog="Flags can also be set with GDOS_AGENT_<FLAG> (e.g. GDOS_AGENT_MASTER).",
        formatter_class=DefaultsHelp,
    )
    p.add_argument("--version", action="store_true", help="print version and build info, exit")
    p.add_argument(
        "--self-check", action="store_true", help="import every module; exit 1 naming what failed"
    )
    p.add_argument(
        "--master",
        default=_env("master", "http://127.0.0.1:8080"),
        help="URL of the master to join and report to; several, separated by commas, to fail "
        "over between them",
    )
    p.add_argument(
        "--token",
        default=_env("token", None),
        help="join token, needed at the first start only (default: $GDOS_AGENT_TOKEN)",
    )
    p.add_argument(
        "--token-file",
        type=Path,
        default=_env("token-file", None),
        help="read the join token from this file, keeping it out of the process list "
        "(default: $GDOS_AGENT_TOKEN_FILE, else --token)",
    )
    work_dir = _env("work-dir", None)
    p.add_argument(
        "--work-dir",
        type=Path,
        default=Path(work_dir) if work_dir else None,
        help="where the agent keeps its credential, state, instances and their logs (default: "
        f"./{DEFAULT_WORK_DIR} in the folder it starts in; it says which at start)",
    )
    p.add_argument(
        "--port",
        type=int,
        default=_env("port", None),
        help="serve GET /healthz on 127.0.0.1:PORT (default: none, no port is opened)",
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
        "windows, macos) and exit (default OS: this one)",
    )
    p.add_argument(
        "--ca-cert",
        type=Path,
        default=_env("ca-cert", None),
        help="CA bundle to verify an https master (default: the system's CAs)",
    )
    p.add_argument(
        "--metrics-interval",
        type=float,
        default=float(_env("metrics-interval", "1.0") or 1.0),
        help="seconds between samples of process and node figures (0: off; the master may override)",
    )
    p.add_argument(
        "--default-user",
        default=_env("default-user", None),
        metavar="USER",
        help="run services whose service.json, instance or adopt request names no `user` as "
        "this account (default: the agent's own user; another account needs a root agent; "
        "not supported on Windows)",
    )
    p.add_argument(
        "--log-roots",
        default=_env("log-roots", ",".join(str(r) for r in DEFAULT_LOG_ROOTS)),
        metavar="DIRS",
        help="folders (comma-separated) that absolute log_paths may point into, besides each "
        "instance's own folder; others are refused at deploy and adopt (default: %(default)s)",
    )
    p.add_argument(
        "--download-retry-seconds",
        type=float,
        default=float(_env("download-retry-seconds", None) or DEFAULT_DOWNLOAD_RETRY_SECONDS),
        metavar="SECONDS",
        help="how long a package download keeps retrying a store that is down or cuts the "
        "connection (backoff with jitter, resuming where it stopped) before the deploy fails "
        "(default: %(default)g)",
    )
    p.add_argument(
        "--log-level",
        default=_env("log-level", "info"),
        choices=["debug", "info", "warning", "error"],
        help="how much the agent logs",
    )
    return p


KNOWN_FLAGS = [a.option_strings[0].lstrip("-") for a in build_parser()._actions if a.option_strings]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(
        normalize_seed_args(sys.argv[1:] if argv is None else argv, KNOWN_FLAGS)
    )
    if args.version:
        print(version_text("gdos-agent"))
        return 0
    if args.self_check:
        from protocol import selfcheck

        return selfcheck.run("gdos-agent", "agent")
    work_dir_given = args.work_dir is not None
    if not work_dir_given:
        args.work_dir = DEFAULT_WORK_DIR
    try:
        args.log_roots = parse_log_roots(args.log_roots)
    except ValueError as exc:
        parser.error(str(exc))
    if args.autostart_print is not None:
        return autostart.print_definition(args, args.autostart_print)
    if args.token_file is not None and not args.token:
        try:
            args.token = Path(args.token_file).read_text().strip()
        except OSError as exc:
            print(
                f"gdos-agent: cannot read the token file {args.token_file}: {exc}", file=sys.stderr
            )
            return 2
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    say_where(Path(args.work_dir), work_dir_given)
    if not tls.needed(args.master, args.ca_cert):
        tls.forgo()  # before the imports below: they would load OpenSSL (see agent.tls)
    import asyncio

    from agent import limits, runtime
    from agent.state import Unreadable

    limits.few_malloc_arenas()
    limits.steady_mmap_threshold()

    try:
        if args.autostart in ("1", "0"):
            return autostart.apply(args, enrol=lambda: runtime.enrol_once(args))
        limits.raise_open_files()  # before the sampler sizes its descriptor budget
        return asyncio.run(runtime.run(args))
    except Unreadable as exc:
        print(f"gdos-agent: {exc}", file=sys.stderr)
        return 2
    except GdosError as exc:  # e.g. its state cannot be saved at start-up (a full disk)
        print(f"gdos-agent: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def say_where(work_dir: Path, given: bool) -> None:
    """The work folder, absolute, in the log: without --work-dir it depends on where the agent
    was started, which is easy to lose."""
    log = logging.getLogger("gdos.agent")
    if given:
        log.info("keeping this node's files in %s", work_dir.absolute())
    else:
        log.warning(
            "no --work-dir given: keeping this node's files in %s (the folder it started in)",
            work_dir.absolute(),
        )


if __name__ == "__main__":
    sys.exit(main())
