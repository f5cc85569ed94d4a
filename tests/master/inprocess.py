"""The master app in this process (no uvicorn), for tests that need its route table or services."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from master.app import create_app
from master.config import Settings
from master.services.wiring import Services
from tests.support import ADMIN_PASSWORD


def settings_for(data_dir: Path, **kw: Any) -> Settings:
    return Settings(
        host="127.0.0.1",
        port=1,
        data_dir=data_dir,
        admin_password=ADMIN_PASSWORD,
        backup_interval=0,
        **kw,
    )


def services_of(app: FastAPI) -> Services:
    return app.state.services


@contextmanager
def running(app: FastAPI) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """Start the app (lifespan included); yields a client and admin auth headers."""
    with TestClient(app, client=("127.0.0.1", 50000)) as client:
        r = client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        r.raise_for_status()
        yield client, {"Authorization": f"Bearer {r.json()['token']}"}


def make_app(data_dir: Path, **kw: Any) -> FastAPI:
    return create_app(settings_for(data_dir, **kw))
