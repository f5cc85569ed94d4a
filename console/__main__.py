"""`gdos-console`: the desktop console (PySide6, asyncio on Qt's loop through qasync).

gdos-console                         start screen: connect to a master or start a local one
gdos-console --master URL            the log-in dialog for that master (remembered)
gdos-console --master URL1,URL2      several masters sharing one database: on one, moving to
                                     the next by itself when it stops answering
gdos-console --embedded              a master on 127.0.0.1 plus a local agent, data in the
                                     user's data directory; quitting stops them
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from protocol import __version__
from protocol.frozen import version_text

if TYPE_CHECKING:
    from PySide6.QtWidgets import QApplication


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="gdos-console", description="GDOS desktop console.")
    p.add_argument("--version", action="store_true", help="print version and build info, exit")
    p.add_argument(
        "--self-check",
        action="store_true",
        help="import every module, check resources and Qt plugins, then the bundled master and "
        "agent; exit 1 naming what failed",
    )
    p.add_argument(
        "--master",
        default=os.environ.get("GDOS_CONSOLE_MASTER"),
        help="master URL, e.g. https://gdos.example:8080; several masters sharing one database: "
        "URL1,URL2 (the console moves to the next when its master stops answering)",
    )
    p.add_argument(
        "--user", default=os.environ.get("GDOS_CONSOLE_USER"), help="log in as this user"
    )
    p.add_argument(
        "--password-file",
        type=Path,
        default=os.environ.get("GDOS_CONSOLE_PASSWORD_FILE"),
        help="read the password from this file and log in without the dialog",
    )
    p.add_argument(
        "--ca",
        default=os.environ.get("GDOS_CONSOLE_CA"),
        help="CA certificate (PEM) for a TLS master",
    )
    p.add_argument(
        "--insecure", action="store_true", help="do not verify the master's TLS certificate"
    )
    p.add_argument("--embedded", action="store_true", help="start a local master and agent")
    p.add_argument("--data-dir", type=Path, default=None, help="data directory of --embedded")
    p.add_argument(
        "--embedded-port", type=int, default=None, help="port of --embedded (default: a free one)"
    )
    p.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    return p.parse_args(list(argv))


async def run(args: argparse.Namespace) -> int:
    from PySide6.QtCore import QSettings, QTimer

    from console.app import ConsoleApp, load_style
    from console.gui_gc import GuiGarbageCollector
    from console.message import describe, error

    app = _qapp()
    icon = load_style(app)
    collector = GuiGarbageCollector(app)  # cycles freed on the GUI thread, not the stream's
    collector.start()
    console = ConsoleApp(QSettings(), icon, args.data_dir, embedded_port=args.embedded_port)
    console.window.show()
    # Ctrl-C in the terminal quits like the menu does (and stops what we started); the timer
    # gives Python a moment now and then to run the handler while Qt's loop has control.
    signal.signal(signal.SIGINT, lambda *_: console.quit())
    signal.signal(signal.SIGTERM, lambda *_: console.quit())
    wake = QTimer()
    wake.start(250)
    wake.timeout.connect(lambda: None)
    if args.embedded:
        console.start_embedded()
    elif args.master and args.password_file:
        verify: bool | str = False if args.insecure else (args.ca or True)
        try:
            password = args.password_file.read_text().strip()
        except OSError as exc:
            error(f"cannot read the password file: {describe(exc)}")
            console.ask_login(args.master)
        else:
            console.login_with(
                {
                    "url": args.master,
                    "username": args.user or "admin",
                    "password": password,
                    "verify": verify,
                    "ca": args.ca or "",
                }
            )
    elif args.master:
        console.ask_login(args.master)
    await console.closed.wait()
    return 0


def _qapp() -> QApplication:
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    assert isinstance(app, QApplication)
    return app


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.version:
        print(version_text("gdos-console"))
        return 0
    if args.self_check:
        from console import selfcheck

        return selfcheck.run()
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        import qasync
        from PySide6.QtCore import QCoreApplication
        from PySide6.QtWidgets import QApplication
    except ImportError as exc:
        print(
            f"gdos-console: the desktop console needs PySide6 and qasync ({exc}); "
            "install them with: pip install 'gdos[console]'",
            file=sys.stderr,
        )
        return 2
    QCoreApplication.setOrganizationName("GDOS")
    QCoreApplication.setApplicationName("gdos-console")
    QCoreApplication.setApplicationVersion(__version__)
    qapp = QApplication(sys.argv[:1])
    qapp.setQuitOnLastWindowClosed(False)  # closing the window goes through ConsoleApp.quit
    try:
        return int(qasync.run(run(args)))
    except KeyboardInterrupt:
        return 130
    finally:
        del qapp


if __name__ == "__main__":
    sys.exit(main())
