"""The main window: a page list on the left, pages on the right, banners on top."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from console.message import ERROR, WARNING, bridge
from console.ui.common import Banner, make_action, on_trigger

PAGES = [
    "overview",
    "nodes",
    "packages",
    "systems",
    "instances",
    "logs",
    "alerts",
    "audit",
    "backups",
    "users",
    "masters",
]


class StartPage(QWidget):
    """Shown until connected: connect to a master, or run one here."""

    connect_requested = Signal()
    embedded_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("startPage")
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        box = QVBoxLayout()
        box.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        title = QLabel("GDOS console")
        title.setObjectName("startTitle")
        title.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        sub = QLabel(
            "Run the services of your fleet. Connect to a master, or make this machine a whole installation."
        )
        sub.setObjectName("startSubtitle")
        sub.setWordWrap(True)
        sub.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.connect_button = QPushButton("Connect to a master…")
        self.connect_button.setObjectName("primaryButton")
        on_trigger(self.connect_button.clicked, self.connect_requested.emit)
        self.embedded_button = QPushButton("Start a local master and agent")
        self.embedded_button.setObjectName("secondaryButton")
        on_trigger(self.embedded_button.clicked, self.embedded_requested.emit)
        self.status = QLabel("")
        self.status.setObjectName("startStatus")
        self.status.setWordWrap(True)
        self.status.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        for w in (title, sub, self.connect_button, self.embedded_button, self.status):
            box.addWidget(w, 0, Qt.AlignmentFlag.AlignHCenter)
        sub.setFixedWidth(560)
        sub.setMinimumHeight(60)
        self.status.setFixedWidth(560)
        outer.addLayout(box)
        outer.addStretch(2)

    def busy(self, text: str) -> None:
        self.status.setText(text)
        self.connect_button.setEnabled(not text)
        self.embedded_button.setEnabled(not text)


class MainWindow(QMainWindow):
    quit_requested = Signal()
    connect_requested = Signal()
    embedded_requested = Signal()
    disconnect_requested = Signal()
    refresh_requested = Signal()

    def __init__(self, settings: QSettings, icon: QIcon | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.setWindowTitle("GDOS console")
        if icon is not None:
            self.setWindowIcon(icon)
        self.resize(1280, 800)
        central = QWidget()
        outer = QVBoxLayout(central)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        self.offline_banner = Banner("offlineBanner", closable=False)
        self.error_banner = Banner("errorBanner")
        outer.addWidget(self.offline_banner)
        outer.addWidget(self.error_banner)
        body = QHBoxLayout()
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(0)
        self.nav = QListWidget()
        self.nav.setObjectName("nav")
        self.nav.setFixedWidth(170)
        self.stack = QStackedWidget()
        self.start_page = StartPage()
        self.stack.addWidget(self.start_page)
        body.addWidget(self.nav)
        body.addWidget(self.stack, 1)
        outer.addLayout(body, 1)
        self.setCentralWidget(central)
        self.pages: dict[str, QWidget] = {}
        self.nav.currentRowChanged.connect(self._show_row)
        self.nav.hide()
        self.conn_label = QLabel("not connected")
        self.conn_label.setObjectName("connLabel")
        self._user = ""
        self.statusBar().addPermanentWidget(self.conn_label)
        self._error_timer = QTimer(self)
        self._error_timer.setSingleShot(True)
        self._error_timer.setInterval(15_000)
        self._error_timer.timeout.connect(self.error_banner.hide)
        bridge().shown.connect(self.show_message)
        self.start_page.connect_requested.connect(self.connect_requested)
        self.start_page.embedded_requested.connect(self.embedded_requested)
        self._menus()

    def _menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self.connect_action = self._add(
            file, "&Connect to a master…", self.connect_requested.emit, "Ctrl+O"
        )
        self.embedded_action = self._add(
            file, "Start a &local master", self.embedded_requested.emit, "Ctrl+E"
        )
        self.disconnect_action = self._add(
            file, "&Disconnect", self.disconnect_requested.emit, "Ctrl+Shift+D"
        )
        file.addSeparator()
        self._add(file, "&Quit", self.quit_requested.emit, "Ctrl+Q")  # on every platform
        view = bar.addMenu("&View")
        self.view_menu = view
        self._add(view, "&Refresh", self.refresh_requested.emit, QKeySequence.StandardKey.Refresh)
        view.addSeparator()

    def _add(
        self,
        menu: QMenu,
        text: str,
        slot: Callable[[], object],
        shortcut: str | QKeySequence.StandardKey,
    ) -> QAction:
        act = make_action(self, text, slot, shortcut, Qt.ShortcutContext.WindowShortcut)
        menu.addAction(act)
        return act

    def add_page(self, name: str, title: str, page: QWidget) -> None:
        """A page in the list; the first ten are Ctrl+1 … Ctrl+9 and Ctrl+0."""
        self.pages[name] = page
        self.stack.addWidget(page)
        item = QListWidgetItem(title)
        item.setData(Qt.ItemDataRole.UserRole, name)
        self.nav.addItem(item)
        n = self.nav.count()
        if n <= 10:
            self._add(self.view_menu, title, lambda: self.show_page(name), f"Ctrl+{n % 10}")

    def show_page(self, name: str) -> None:
        for row in range(self.nav.count()):
            item = self.nav.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == name:
                self.nav.setCurrentRow(row)
                return

    def current_page(self) -> str:
        item = self.nav.currentItem()
        return str(item.data(Qt.ItemDataRole.UserRole)) if item else ""

    def _show_row(self, row: int) -> None:
        item = self.nav.item(row)
        if item is not None:
            self.stack.setCurrentWidget(self.pages[str(item.data(Qt.ItemDataRole.UserRole))])

    def set_connected(self, url: str, username: str, role: str) -> None:
        self._user = f"{username} ({role})"
        self.conn_label.setText(f"{self._user} @ {url}")
        self.setWindowTitle(f"GDOS console — {url}")
        self.nav.show()
        self.start_page.busy("")
        self.show_page(str(self.settings.value("window/page", "overview")))
        if not self.current_page():
            self.nav.setCurrentRow(0)

    def set_master(self, url: str, master_id: str) -> None:
        """The master the console is on: its URL and, once known, its id."""
        on = f"{url} (master {master_id})" if master_id else url
        self.conn_label.setText(f"{self._user} @ {on}".strip())
        self.setWindowTitle(f"GDOS console — {on}")

    def set_disconnected(self) -> None:
        self.conn_label.setText("not connected")
        self.setWindowTitle("GDOS console")
        self.offline_banner.hide()
        self.nav.hide()
        self.stack.setCurrentWidget(self.start_page)

    def set_reachable(self, reachable: bool, reason: str) -> None:
        if reachable:
            self.offline_banner.hide()
        else:
            self.offline_banner.say(
                f"The master is unreachable ({reason}). Showing the last known state, greyed; "
                "reconnecting by itself…"
            )

    def show_message(self, level: str, text: str) -> None:
        self.statusBar().showMessage(text, 10_000)
        if level in (ERROR, WARNING):
            self.error_banner.say(text)
            self._error_timer.start()

    def restore_state(self) -> None:
        geometry = self.settings.value("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        state = self.settings.value("window/state")
        if state is not None:
            self.restoreState(state)

    def save_state(self) -> None:
        self.settings.setValue("window/geometry", self.saveGeometry())
        self.settings.setValue("window/state", self.saveState())
        if self.current_page():
            self.settings.setValue("window/page", self.current_page())
        for page in self.pages.values():
            for panel in page.findChildren(QWidget):
                save = getattr(panel, "save", None)
                if callable(save) and hasattr(panel, "proxy"):
                    save()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_state()
        event.ignore()
        self.quit_requested.emit()
