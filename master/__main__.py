"""`gdos-master` / `python -m master`: serve the API, optionally with a local agent.

The port is taken before the database layer and the application are imported
(master/listen.py): agents reconnecting to a restarted master queue for it rather than being
refused and backing off.
"""

import asyncio
import gc
import logging
import socket
import sys
from collections.abc import Sequence

from master.cli import parse_args, settings_from_args
from master.config import Settings
from master.db.apart import CHILD_ARG
from master.listen import close_all, listen
from master.start_marks import mark
from protocol.frozen import version_text


def main(argv: Sequence[str] | None = None) -> int:
    mark("main")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [CHILD_ARG]:  # a serving master's migration (master/db/apart.py)
        from master.db.apart import child_main

        return child_main()
    if argv[:1] == ["restore"]:
        from master.restore_cli import main as restore_main

        return restore_main(argv[1:])
    args = parse_args(argv)
    if args.version:
        print(version_text("gdos-master"))
        return 0
    if args.self_check:
        from master import selfcheck

        return selfcheck.run()
    settings = settings_from_args(args)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        sockets = listen(settings.host, settings.port)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        print(
            f"gdos-master: cannot listen on {settings.host}:{settings.port}: {reason}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    mark("listening")
    try:
        return _serve(settings, args.with_agent, sockets)
    except KeyboardInterrupt:
        return 130
    finally:
        close_all(sockets)


def _serve(settings: Settings, with_agent: bool, sockets: list[socket.socket]) -> int:
    """Everything after the port is taken: the database checked, the application imported
    and served (importing the database layer alone takes a loaded machine a second)."""
    # No collection while the start builds objects that live as long as the process: they are
    # collected once before the services start, then frozen when the master serves (`serve`,
    # master/heap.py).
    gc.disable()
    from master.db.session import DatabaseUnavailable, check_database

    try:
        check_database(settings.database_url)  # no driver, no server: one clear line
    except DatabaseUnavailable as exc:
        print(f"gdos-master: {exc}", file=sys.stderr, flush=True)
        return 2
    mark("database_checked")
    from master.server import tune_allocator
    from master.serving import serve  # the application: the seconds of a start

    mark("imported")
    tune_allocator()  # before the first request: uploads read 1 MiB at a time
    return asyncio.run(serve(settings, with_agent, sockets))


if __name__ == "__main__":
    sys.exit(main())
