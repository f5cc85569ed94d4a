"""Fixtures that start real masters and agents; their logs are printed when a test fails. The
master's database is SQLite, or with `db_url` SQLite and then a throwaway PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg import Cluster, find_bindir, keep_seed, missing_reason, reset
from tests.support import Agent, Api, Master, Proc, kill_services_under

_started: list[Proc] = []


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    if report.when == "call" and report.failed:
        for proc in _started:
            report.sections.append((f"{proc.name} log ({proc.log_path})", proc.tail(80)))
    return report


@pytest.fixture
def master_factory(tmp_path: Path) -> Iterator:
    made: list[Master] = []

    def make(name: str = "master", extra: list[str] | None = None, **kw) -> Master:
        m = Master(tmp_path / name, extra=extra, **kw)
        made.append(m)
        _started.append(m)
        return m.launch()

    yield make
    for m in made:
        m.stop()
        _started.remove(m) if m in _started else None


@pytest.fixture
def master(master_factory) -> Master:
    return master_factory()


@pytest.fixture
def api(master: Master) -> Iterator[Api]:
    client = master.api()
    yield client
    client.close()


@pytest.fixture
def agent_factory(tmp_path: Path) -> Iterator:
    made: list[Agent] = []

    def make(
        master: Master,
        name: str = "agent",
        extra: list[str] | None = None,
        token: str | None = None,
        program: list[str] | None = None,
    ) -> Agent:
        a = Agent(master, tmp_path / name, extra=extra, token=token, program=program)
        made.append(a)
        _started.append(a)
        return a

    yield make
    for a in made:
        a.stop()
        _started.remove(a) if a in _started else None
    kill_services_under(tmp_path)


@pytest.fixture(scope="module")
def shared_master(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Master]:
    """One master for a whole module of API tests that do not disturb each other."""
    m = Master(tmp_path_factory.mktemp("shared") / "master")
    _started.append(m)
    m.launch()
    yield m
    m.stop()
    _started.remove(m)


@pytest.fixture(scope="module")
def shared_api(shared_master: Master) -> Iterator[Api]:
    client = shared_master.api()
    yield client
    client.close()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    """A PostgreSQL server of its own for the session (skipped, saying why, where it cannot)."""
    reason = missing_reason()
    if reason is not None:
        pytest.skip(reason)
    bindir = find_bindir()
    assert bindir is not None
    cluster = Cluster(bindir).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def pg_migrated(pg_cluster: Cluster) -> str:
    """A database migrated once per session, the template of the modules' databases (nobody
    stays connected to it)."""
    from master.db.session import Database

    url = pg_cluster.create_database()
    db = Database(url)
    db.migrate()
    db.dispose()
    keep_seed(url)
    return url


@pytest.fixture(scope="module")
def pg_module_db(pg_cluster: Cluster, pg_migrated: str) -> Iterator[str]:
    """One fresh PostgreSQL database per test module, at the newest schema."""
    url = pg_cluster.create_database(template=pg_migrated)
    yield url
    pg_cluster.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The master's database URL: a new SQLite file, then the module's PostgreSQL database
    as freshly migrated (emptied, the rows migrations seed put back)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'master.db'}"
    url: str = request.getfixturevalue("pg_module_db")
    reset(url)
    return url


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """An S3 server (moto's) on a free loopback port for the session: its `host:port`."""
    from moto.server import ThreadedMotoServer

    from tests.support import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop()
