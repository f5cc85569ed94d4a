"""The `apply` file: a system as YAML (API.md "gdosctl"), read strictly (an unknown key or a
number where text belongs is a usage error naming its place) and written back by `export`."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from gdosctl.errors import USAGE, CtlError


@dataclass(frozen=True)
class DesiredInstance:
    node: str  # node id, id prefix or hostname
    env: dict[str, str] = field(default_factory=dict)  # its own, over the module's
    args: list[str] | None = None  # its own; None: the module's


@dataclass(frozen=True)
class DesiredModule:
    name: str
    package: str
    version: str | None = None  # None: the newest
    start_order: int = 1
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] | None = None  # None: the package's
    instances: tuple[DesiredInstance, ...] = ()


@dataclass(frozen=True)
class DesiredSystem:
    name: str
    description: str = ""
    modules: tuple[DesiredModule, ...] = ()


SYSTEM_KEYS = ("system", "description", "modules")
MODULE_KEYS = ("name", "package", "version", "start_order", "env", "args", "instances")
INSTANCE_KEYS = ("node", "env", "args")


def parse(text: str, source: str = "the file") -> DesiredSystem:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CtlError(f"{source} is not valid YAML: {exc}", USAGE) from None
    return from_data(data, source)


def from_data(data: Any, source: str = "the file") -> DesiredSystem:
    where = _Where(source)
    root = where.mapping(data, "", SYSTEM_KEYS)
    modules = [
        _module(where, raw, f"modules[{i}]")
        for i, raw in enumerate(where.sequence(root.get("modules", []), "modules"))
    ]
    names = [m.name for m in modules]
    for name in names:
        if names.count(name) > 1:
            raise CtlError(f"{source}: module {name} is listed twice", USAGE)
    return DesiredSystem(
        name=where.text(root.get("system"), "system", required=True),
        description=where.text(root.get("description", ""), "description"),
        modules=tuple(modules),
    )


def _module(where: _Where, raw: Any, path: str) -> DesiredModule:
    data = where.mapping(raw, path, MODULE_KEYS)
    instances = [
        _instance(where, item, f"{path}.instances[{i}]")
        for i, item in enumerate(where.sequence(data.get("instances", []), f"{path}.instances"))
    ]
    version = data.get("version")
    start_order = data.get("start_order", 1)
    if isinstance(start_order, bool) or not isinstance(start_order, int):
        raise CtlError(f"{where.source}: {path}.start_order must be a whole number", USAGE)
    return DesiredModule(
        name=where.text(data.get("name"), f"{path}.name", required=True),
        package=where.text(data.get("package"), f"{path}.package", required=True),
        version=None if version is None else where.text(version, f"{path}.version"),
        start_order=start_order,
        env=where.env(data.get("env", {}), f"{path}.env"),
        args=where.args(data.get("args"), f"{path}.args"),
        instances=tuple(instances),
    )


def _instance(where: _Where, raw: Any, path: str) -> DesiredInstance:
    data = where.mapping(raw, path, INSTANCE_KEYS)
    return DesiredInstance(
        node=where.text(data.get("node"), f"{path}.node", required=True),
        env=where.env(data.get("env", {}), f"{path}.env"),
        args=where.args(data.get("args"), f"{path}.args"),
    )


@dataclass(frozen=True)
class _Where:
    source: str

    def fail(self, path: str, message: str) -> CtlError:
        return CtlError(f"{self.source}: {path + ': ' if path else ''}{message}", USAGE)

    def mapping(self, value: Any, path: str, keys: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "must be a mapping (key: value lines)")
        for key in value:
            if key not in keys:
                close = difflib.get_close_matches(str(key), keys, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]}?)" if close else ""
                here = f"{path}.{key}" if path else str(key)
                raise self.fail("", f"unknown field {here}{hint}")
        return value

    def sequence(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, "must be a list (lines starting with '- ')")
        return value

    def text(self, value: Any, path: str, required: bool = False) -> str:
        if value is None and required:
            raise self.fail(path, "is required")
        if isinstance(value, (bool, int | float)):
            raise self.fail(path, f'write it in quotes ("{value}"): YAML reads it as a number')
        if not isinstance(value, str):
            raise self.fail(path, "must be text")
        return value

    def env(self, value: Any, path: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, "must be a mapping of NAME: value")
        return {str(k): self.text(v, f"{path}.{k}") for k, v in value.items()}

    def args(self, value: Any, path: str) -> list[str] | None:
        if value is None:
            return None
        if not isinstance(value, list):
            raise self.fail(path, "must be a list of arguments")
        return [self.text(v, f"{path}[{i}]") for i, v in enumerate(value)]


def to_data(system: DesiredSystem) -> dict[str, Any]:
    """The file's form: defaults left out where the reader would assume them anyway."""
    out: dict[str, Any] = {"system": system.name}
    if system.description:
        out["description"] = system.description
    modules = []
    for m in system.modules:
        mod: dict[str, Any] = {"name": m.name, "package": m.package}
        if m.version is not None:
            mod["version"] = m.version
        mod["start_order"] = m.start_order
        if m.env:
            mod["env"] = dict(m.env)
        if m.args is not None:
            mod["args"] = list(m.args)
        if m.instances:
            mod["instances"] = []
            for inst in m.instances:
                one: dict[str, Any] = {"node": inst.node}
                if inst.env:
                    one["env"] = dict(inst.env)
                if inst.args is not None:
                    one["args"] = list(inst.args)
                mod["instances"].append(one)
        modules.append(mod)
    out["modules"] = modules
    return out


def render(system: DesiredSystem) -> str:
    import yaml

    return str(yaml.safe_dump(to_data(system), sort_keys=False, allow_unicode=True))
