"""A fake of the autostart OS seam: files in memory, commands recorded, service managers
simulated just enough (enabled / running / registered / loaded) to test idempotency."""

from __future__ import annotations

from pathlib import Path

from agent.autostart.system import Completed


class FakeSystem:
    def __init__(
        self,
        admin: bool = True,
        tools: tuple[str, ...] = ("systemctl", "schtasks", "launchctl"),
        existing: tuple[Path, ...] = (Path("/run/systemd/system"), Path("/etc/systemd/system")),
        fail: str | None = None,
    ) -> None:
        self.admin = admin
        self.tools = tools
        self.dirs = set(existing)
        self.files: dict[Path, bytes] = {}
        self.calls: list[list[str]] = []
        self.writes: list[Path] = []
        self.state: set[str] = set()  # "enabled", "active", "registered", "loaded"
        self.fail = fail  # a sub-command that fails, e.g. "enable"

    # -- the seam ----------------------------------------------------------------------------
    def run(self, argv: list[str]) -> Completed:
        self.calls.append(list(argv))
        tool, args = Path(argv[0]).name, argv[1:]
        if self.fail and self.fail in args:
            return Completed(1, f"{self.fail}: Access denied")
        if tool == "systemctl":
            return self._systemctl(args)
        if tool == "schtasks":
            return self._schtasks(args)
        if tool == "launchctl":
            return self._launchctl(args)
        return Completed(127, f"{tool}: not found")

    def read(self, path: Path) -> bytes | None:
        return self.files.get(path)

    def write(self, path: Path, data: bytes) -> None:
        self.writes.append(path)
        self.files[path] = data

    def remove(self, path: Path) -> bool:
        return self.files.pop(path, None) is not None

    def exists(self, path: Path) -> bool:
        return path in self.files or path in self.dirs

    def which(self, name: str) -> str | None:
        return f"/usr/bin/{name}" if name in self.tools else None

    def is_admin(self) -> bool:
        return self.admin

    def writable(self, directory: Path) -> bool:
        return self.admin

    # -- service managers ----------------------------------------------------------------------
    def commands(self) -> list[str]:
        """The calls that change something (queries left out), as `tool sub-command ...`."""
        queries = {"is-enabled", "is-active", "/Query", "print"}
        return [
            " ".join([Path(c[0]).name, *c[1:]]) for c in self.calls if not queries & set(c[1:2])
        ]

    def _systemctl(self, args: list[str]) -> Completed:
        cmd = args[0]
        if cmd == "is-enabled":
            on = "enabled" in self.state
            return Completed(0 if on else 1, "enabled" if on else "disabled")
        if cmd == "is-active":
            return Completed(0 if "active" in self.state else 3, "")
        if cmd == "enable":
            self.state.add("enabled")
        elif cmd in ("start", "restart"):
            self.state.add("active")
        elif cmd == "disable":
            self.state.discard("enabled")
            if "--now" in args:
                self.state.discard("active")
        return Completed(0, "")

    def _schtasks(self, args: list[str]) -> Completed:
        cmd = args[0]
        if cmd == "/Query":
            return Completed(0 if "registered" in self.state else 1, "")
        if cmd == "/Create":
            self.state.add("registered")
        elif cmd == "/Delete":
            self.state.discard("registered")
        elif cmd == "/Run":
            self.state.add("active")
        elif cmd == "/End":
            self.state.discard("active")
        return Completed(0, "")

    def _launchctl(self, args: list[str]) -> Completed:
        cmd = args[0]
        if cmd == "print":
            return Completed(0 if "loaded" in self.state else 113, "")
        if cmd == "bootstrap":
            self.state.add("loaded")
        elif cmd == "bootout":
            self.state.discard("loaded")
        return Completed(0, "")
