"""Composition root: the session, the services, the window and its pages, wired once."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, QStandardPaths, QTimer
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

from console.embedded import EmbeddedMaster, StartOvertaken
from console.message import async_slot, describe, error, info, warning
from console.models.series import SeriesStore
from console.services.alerts import AlertsService
from console.services.audit import AuditService
from console.services.backups import BackupsService
from console.services.fleet import FleetService
from console.services.logs import LogsService
from console.services.masters import MastersService
from console.services.metrics import MetricsService
from console.services.operations import OperationsService
from console.services.releases import ReleasesService
from console.services.session import Session
from console.services.uploads import UploadService
from console.services.users import UsersService
from console.ui.alerts_page import AlertsPage
from console.ui.audit_page import AuditPage
from console.ui.backups_page import BackupsPage
from console.ui.dialogs.login import LoginDialog
from console.ui.instances import InstancesPage
from console.ui.logs_page import LogsPage
from console.ui.main_window import MainWindow
from console.ui.masters_page import MastersPage
from console.ui.nodes import NodesPage
from console.ui.overview import OverviewPage
from console.ui.packages import PackagesPage
from console.ui.systems import SystemsPage
from console.ui.users_page import UsersPage

log = logging.getLogger(__name__)
RESOURCES = Path(__file__).resolve().parent.parent / "resources"
RESTART_DELAYS = (1, 2, 4, 8, 16, 30)  # seconds before restarting a local master that died
STEADY = 60.0  # a local master that ran this long starts the backoff afresh when it dies
GIVE_UP = 5  # deaths in a row, each within STEADY, after which only the Restart button helps


def resource(name: str) -> Path:
    return RESOURCES / name


def load_style(app: QApplication) -> QIcon:
    """The style sheet and icon from resources/ (a missing file degrades to Qt's defaults)."""
    qss = resource("style.qss")
    if qss.is_file():
        app.setStyleSheet(
            qss.read_text(encoding="utf-8").replace("@RESOURCES@", RESOURCES.as_posix())
        )
    icon = QIcon(str(resource("icon.svg")))
    app.setWindowIcon(icon)
    return icon


def default_data_dir() -> Path:
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)
    return Path(base or Path.home() / ".local/share/gdos-console") / "embedded"


class ConsoleApp:
    def __init__(
        self,
        settings: QSettings,
        icon: QIcon | None = None,
        data_dir: Path | None = None,
        tick_ms: int = 100,
        embedded_port: int | None = None,
    ) -> None:
        self.settings = settings
        self.embedded_port = embedded_port
        self.data_dir = data_dir or default_data_dir()
        self.embedded: EmbeddedMaster | None = None
        self.closed = asyncio.Event()
        self.session = Session()
        self.store = SeriesStore()
        self.fleet = FleetService(self.session, tick_ms)
        self.operations = OperationsService(self.session, self.fleet, tick_ms)
        self.releases = ReleasesService(self.session, self.fleet, self.operations)
        self.metrics = MetricsService(self.session, self.store)
        self.uploads = UploadService(self.session, settings)
        self.alerts = AlertsService(self.session, tick_ms)
        self.logs = LogsService(self.session)
        self.audit = AuditService(self.session)
        self.backups = BackupsService(self.session)
        self.users = UsersService(self.session)
        self.masters = MastersService(self.session)
        self.window = MainWindow(settings, icon)
        self._add_pages(settings)
        self._connect()
        self.window.restore_state()
        self._login_dialog: LoginDialog | None = None
        # The local master's supervision: restarted on the same port when it dies.
        self._restart_timer = QTimer(self.window)
        self._restart_timer.setSingleShot(True)
        self._restart_timer.timeout.connect(lambda: self.restart_embedded())
        self._quick_deaths = 0
        self._embedded_since = 0.0
        self._restarting = False  # one restart at a time (the timer and the button may race)
        self._closing = False  # set by shutdown(): nothing is started or logged into after it
        self.live_models = (
            self.fleet.nodes,
            self.fleet.instances,
            self.fleet.packages,
            self.alerts.alerts,
            self.alerts.rules,
            self.alerts.silences,
        )

    def _add_pages(self, settings: QSettings) -> None:
        """One page per service, added to the window in the sidebar's order."""
        self.overview = OverviewPage(
            self.fleet.nodes, self.fleet.instances, self.alerts.alerts, self.fleet.packages
        )
        self.nodes_page = NodesPage(self.fleet, self.metrics, settings)
        self.packages_page = PackagesPage(self.fleet, self.uploads, settings)
        self.systems_page = SystemsPage(self.fleet, self.operations, self.releases)
        self.instances_page = InstancesPage(self.fleet, self.metrics, self.releases, settings)
        self.logs_page = LogsPage(self.logs, self.fleet.instances)
        self.alerts_page = AlertsPage(self.alerts, settings, self._scopes)
        self.audit_page = AuditPage(self.audit, settings)
        self.backups_page = BackupsPage(self.backups, settings)
        self.users_page = UsersPage(self.users, settings)
        self.masters_page = MastersPage(self.masters, self.session, settings)
        for name, title, page in (
            ("overview", "Overview", self.overview),
            ("nodes", "Nodes", self.nodes_page),
            ("packages", "Packages", self.packages_page),
            ("systems", "Systems", self.systems_page),
            ("instances", "Instances", self.instances_page),
            ("logs", "Logs", self.logs_page),
            ("alerts", "Alerts", self.alerts_page),
            ("audit", "Audit", self.audit_page),
            ("backups", "Backups", self.backups_page),
            ("users", "Users", self.users_page),
            ("masters", "Masters", self.masters_page),
        ):
            self.window.add_page(name, title, page)

    def _connect(self) -> None:
        """The signals between services, pages and the window."""
        w = self.window
        self.instances_page.open_logs.connect(self._open_logs)
        self.metrics.released.connect(self.fleet.instances.clear_live)
        self.alerts.names = self._name_of
        self.session.logged_in.connect(self._logged_in)
        self.session.logged_out.connect(w.set_disconnected)
        self.session.reachable_changed.connect(self._reachable)
        self.session.resynced.connect(self._resynced)
        self.session.master_changed.connect(w.set_master)
        self.session.failover.moved.connect(self._moved)
        self.session.failover.refused.connect(self._refused)
        self.alerts.fired.connect(
            lambda a: warning(
                f"alert {a.get('rule_name') or a.get('rule_id')} firing on "
                f"{a.get('target_kind', '')} {a.get('target_name') or a.get('target')}"
            )
        )
        w.connect_requested.connect(self.ask_login)
        w.embedded_requested.connect(self.start_embedded)
        w.disconnect_requested.connect(self.disconnect)
        w.refresh_requested.connect(self._refresh)
        w.quit_requested.connect(self.quit)

    # -- connecting -----------------------------------------------------------------------

    def ask_login(self, url: str = "", problem: str = "") -> LoginDialog:
        """The log-in dialog; it stays open, with what was typed, until the log-in works."""
        s = self.settings
        dlg = LoginDialog(
            url or str(s.value("login/url", "")),
            str(s.value("login/username", "admin")),
            str(s.value("login/ca", "")),
            self.window,
        )
        dlg.submit = self._login
        if problem:
            dlg.show_problem(problem)
        dlg.open()
        self._login_dialog = dlg
        return dlg

    async def _login(self, values: dict[str, Any]) -> None:
        """Log in (raises ClientError with the master's words); remember where and as whom."""
        self.window.start_page.busy(f"connecting to {values['url']}…")
        try:
            await self.session.login(
                values["url"], values["username"], values["password"], values["verify"]
            )
        finally:
            self.window.start_page.busy("")
        for key in ("url", "username", "ca"):
            self.settings.setValue(f"login/{key}", values.get(key, ""))

    @async_slot(dict)
    async def login_with(self, values: dict[str, Any]) -> bool:
        """Log in without the dialog (a password file); on failure the dialog says why."""
        try:
            await self._login(values)
        except Exception as exc:
            error(f"log-in failed: {describe(exc)}")
            self.ask_login(values["url"], describe(exc))
            return False
        return True

    @async_slot()
    async def start_embedded(self) -> bool:
        if self.embedded is not None:
            if self.embedded.running:
                info("the local master is already running")
                return True
            return await self.restart_embedded()
        self.window.start_page.busy(f"starting a local master and agent (data in {self.data_dir})…")
        master = EmbeddedMaster(self.data_dir, self.embedded_port)
        master.on_exit = self._embedded_died
        try:
            await master.start()
            self.embedded = master
            self._embedded_since = time.monotonic()
            await self.session.login(master.url, "admin", master.password)
        except Exception as exc:
            master.stop()
            self.embedded = None
            self.window.start_page.busy("")
            error(f"starting the local master failed: {describe(exc)}")
            return False
        info(f"local master on {master.url}, data in {self.data_dir}")
        return True

    def _embedded_died(self, how: str) -> None:
        """The local master ended unasked: say so, grey what is shown, restart it (backoff)."""
        if self.embedded is None:
            return
        quick = time.monotonic() - self._embedded_since < STEADY
        self._quick_deaths = self._quick_deaths + 1 if quick else 1
        self._set_live(False)
        if self._quick_deaths > GIVE_UP:
            error(
                f"the local master {how}, {self._quick_deaths} times in a row; it is not "
                "restarted by itself any more (use Restart)"
            )
        else:
            delay = RESTART_DELAYS[min(self._quick_deaths, len(RESTART_DELAYS)) - 1]
            error(f"the local master {how}; restarting it in {delay} s")
            self._restart_timer.start(delay * 1000)
        self._show_master_state()

    @async_slot()
    async def restart_embedded(self) -> bool:
        """Start the local master again on its port: the console reconnects to it by itself."""
        master = self.embedded
        self._restart_timer.stop()
        if master is None:
            return await self.start_embedded()
        if master.running or self._restarting or self._closing:
            return master.running
        self._restarting = True
        try:
            return await self._restart(master)
        finally:
            self._restarting = False

    async def _restart(self, master: EmbeddedMaster) -> bool:
        self.window.offline_banner.say(
            f"Starting the local master again (data in {self.data_dir})…"
        )
        try:
            await master.start()
        except StartOvertaken:
            return False  # the console is closing, or was disconnected meanwhile
        except Exception as exc:
            log.warning("restarting the local master failed: %s", describe(exc))
            self._embedded_since = time.monotonic()
            self._embedded_died(f"did not start again ({describe(exc)})")
            return False
        if self._closing or self.embedded is not master:
            return False
        self._embedded_since = time.monotonic()
        if self.session.client is not None and self.session.client.base_url == master.url:
            self.session.retry_now()  # the stream reconnects now, with its subscriptions
        else:
            try:
                await self.session.login(master.url, "admin", master.password)
            except Exception as exc:
                if self._closing:
                    return False
                error(f"the local master is running again, but logging in failed: {describe(exc)}")
                self._show_master_state()
                return False
        info(f"the local master is running again on {master.url}")
        self._show_master_state()
        return True

    @async_slot()
    async def disconnect(self) -> None:
        self._restart_timer.stop()
        await self.session.logout()
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None

    # -- what is live ---------------------------------------------------------------------

    def _reachable(self, reachable: bool, reason: str) -> None:
        self._set_live(reachable)
        self._show_master_state(reason)

    def _set_live(self, live: bool) -> None:
        """Grey out what is shown while it is not live (the master is away), or show it live."""
        for model in self.live_models:
            model.set_stale(not live)
        self.overview.set_live(live)

    def _show_master_state(self, reason: str = "") -> None:
        master = self.embedded
        w = self.window
        if master is not None and not master.running:
            how = master.exit_reason or "stopped"
            if self._restart_timer.isActive():
                then = "restarting it by itself…"
            else:
                then = "it is not restarted by itself any more."
            w.offline_banner.say(
                f"The local master {how}; {then} Showing the last known state, greyed. "
                f"Its log: {master.log_path}",
                "Restart now",
                self.restart_embedded,
            )
        elif self.session.reachable or not self.session.connected:
            w.set_reachable(True, "")
        else:
            w.set_reachable(False, reason or "no answer")

    def _moved(self, old: str, new: str, master_id: str) -> None:
        name = f"master {master_id} at {new}" if master_id else f"the master at {new}"
        warning(
            f"this console moved to {name}: the master at {old} stopped answering (an action "
            "that failed there was not sent again: try it again if it is still needed)"
        )

    @async_slot(str)
    async def _refused(self, why: str) -> None:
        urls = ",".join(self.session.urls)
        error(why)
        await self.session.logout()
        self.ask_login(urls, why)

    def _logged_in(self, url: str, username: str, role: str) -> None:
        self.window.set_connected(url, username, role)

    def _resynced(self) -> None:
        """The stream (re)connected: the fleet and the alerts reload themselves; the rest here."""
        self.users.reload()
        self.backups.reload()
        self.audit_page.load()

    def _refresh(self) -> None:
        if self.session.connected:
            self.fleet.reload()
            self.alerts.reload()
            self.masters.reload()
            self._resynced()

    def _name_of(self, kind: str, ident: str) -> str:
        if kind == "system":
            return self.fleet.system_names.get(ident, ident)
        if kind == "node":
            return self.fleet.node_names.get(ident, ident)
        row = self.fleet.instances.row(ident)
        return str(row.get("name")) if row else ident

    def _scopes(self) -> dict[str, list[tuple[str, str]]]:
        """What an alert rule can watch, by name (the rule dialog's scope picker)."""
        return {
            "system": sorted(self.fleet.system_names.items(), key=lambda kv: kv[1]),
            "node": sorted(self.fleet.node_names.items(), key=lambda kv: kv[1]),
            "instance": [(str(r["id"]), str(r.get("name"))) for r in self.fleet.instances.rows()],
        }

    def _open_logs(self, instance_id: str) -> None:
        self.window.show_page("logs")
        self.logs_page.show_instance(instance_id)

    # -- quitting -------------------------------------------------------------------------

    @async_slot()
    async def quit(self) -> None:
        self.window.save_state()
        self.settings.sync()
        await self.shutdown()
        self.window.hide()
        self.closed.set()

    async def shutdown(self) -> None:
        """Log out and stop what this console started (the embedded master and its agent)."""
        self._closing = True
        try:
            await self.session.logout(quiet=True)
        finally:
            # Nothing may tick after this: a timer's async slot would find no loop to run on.
            for owner in (
                self.session,
                self.fleet,
                self.operations,
                self.metrics,
                self.alerts,
                self.logs,
                self.masters,
                self.window,
            ):
                for timer in owner.findChildren(QTimer):
                    timer.stop()
            self._restart_timer.stop()
            if self.embedded is not None:
                await asyncio.to_thread(self.embedded.stop)
                self.embedded = None
