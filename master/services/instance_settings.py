"""What an instance runs with: its module's env and args with the instance's own over them, its
index and account, and whether that (or its module's version) differs from what it was last
deployed, started or switched with (`drift`).

The agent adds the package's own env under these (service.json's `env`), so the settings sent
to it never carry a package's env: switching to another release brings that release's.
"""

import hashlib
import json
from collections.abc import Iterable, Mapping
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from master.db import models
from protocol.messages import Settings


def settings_for(mod: models.Module | None, inst: models.Instance) -> Settings:
    env = {str(k): str(v) for k, v in ((mod.env if mod else None) or {}).items()}
    env.update({str(k): str(v) for k, v in (inst.override_env or {}).items()})
    args = inst.override_args if inst.override_args is not None else (mod.args if mod else None)
    return Settings(env=env, args=args, index=inst.module_index, user=inst.override_user)


def digest(settings: Settings) -> str:
    """A fingerprint of the settings: equal settings, equal digest (key order aside)."""
    text = json.dumps(settings.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def applied(package_id: str | None, settings: Settings) -> dict[str, Any]:
    """The `applied` column: what the instance was last deployed, started or switched with."""
    return {"package_id": package_id, "settings": digest(settings)}


def next_index(s: Session, module_id: str) -> int:
    """The lowest index no instance of the module holds (1, 2, ...)."""
    taken = set(
        s.scalars(
            select(models.Instance.module_index).where(models.Instance.module_id == module_id)
        )
    )
    n = 1
    while n in taken:
        n += 1
    return n


def desired_package(s: Session, mod: models.Module) -> models.Package | None:
    """The package the module asks for: its version, or the newest upload of its package."""
    q = select(models.Package).where(models.Package.name == mod.package_name)
    if mod.version is not None:
        q = q.where(models.Package.version == mod.version)
    return s.scalars(q.order_by(models.Package.uploaded_at.desc()).limit(1)).first()


def is_drifted(
    inst: models.Instance, mod: models.Module | None, package: models.Package | None
) -> bool:
    """The module's version, env or args differ from what the instance last ran with. Settings
    of an instance never started since releases came (no `applied`) are not second-guessed."""
    if inst.adopted or mod is None:
        return False
    if package is not None and inst.package_id != package.id:
        return True
    settings = (inst.applied or {}).get("settings")
    return settings is not None and settings != digest(settings_for(mod, inst))


def refresh_drift(s: Session, instances: Iterable[models.Instance]) -> list[models.Instance]:
    """Recompute `drift` of these instances (not committed); returns those whose flag changed."""
    changed = []
    modules: dict[str, models.Module | None] = {}
    packages: dict[str, models.Package | None] = {}
    for inst in instances:
        if inst.module_id is None:
            continue
        if inst.module_id not in modules:
            mod = s.get(models.Module, inst.module_id)
            modules[inst.module_id] = mod
            packages[inst.module_id] = desired_package(s, mod) if mod else None
        drift = is_drifted(inst, modules[inst.module_id], packages[inst.module_id])
        if drift != bool(inst.drift):
            inst.drift = drift
            changed.append(inst)
    return changed


def of_modules(s: Session, module_ids: Iterable[str]) -> list[models.Instance]:
    ids = list(module_ids)
    if not ids:
        return []
    return list(s.scalars(select(models.Instance).where(models.Instance.module_id.in_(ids))))


def for_rows(
    s: Session, rows: Iterable[Mapping[str, Any]]
) -> dict[str, tuple[Settings, dict[str, Any]]]:
    """Settings of many instance rows at once (a batch start), each with the columns that record
    them (`applied`, `drift`); adopted processes are left out."""
    out: dict[str, tuple[Settings, dict[str, Any]]] = {}
    modules: dict[str, models.Module | None] = {}
    packages: dict[str, models.Package | None] = {}
    for row in rows:
        module_id = row["module_id"]
        if row["adopted"] or module_id is None:
            continue
        if module_id not in modules:
            mod = s.get(models.Module, module_id)
            modules[module_id] = mod
            packages[module_id] = desired_package(s, mod) if mod else None
        inst = cast(models.Instance, SimpleNamespace(**row))
        settings = settings_for(modules[module_id], inst)
        inst.applied = applied(row["package_id"], settings)
        drift = is_drifted(inst, modules[module_id], packages[module_id])
        out[row["id"]] = (settings, {"applied": inst.applied, "drift": drift})
    return out
