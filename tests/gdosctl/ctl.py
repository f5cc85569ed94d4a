"""gdosctl as a subprocess, as users and CI run it (with PySide6 made unimportable, so a command
that reached for Qt would fail)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import child_env

NO_QT = "import sys; sys.modules['PySide6'] = None; from gdosctl.__main__ import main; main()"


@dataclass
class Result:
    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def __str__(self) -> str:
        return f"gdosctl {' '.join(self.args)} -> {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


class Ctl:
    def __init__(self, home: Path, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.env = env or {}

    def environ(self, **extra: str) -> dict[str, str]:
        return child_env(XDG_CONFIG_HOME=str(self.home), COLUMNS="200", **self.env, **extra)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-c", NO_QT, *args]

    def __call__(
        self,
        *args: str,
        expect: int | None = 0,
        input: str | None = None,
        timeout: float = 180,
        **env: str,
    ) -> Result:
        done = subprocess.run(
            self.argv(*args),
            env=self.environ(**env),
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        result = Result(args, done.returncode, done.stdout, done.stderr)
        if expect is not None:
            assert result.code == expect, str(result)
        return result
