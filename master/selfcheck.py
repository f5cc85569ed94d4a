"""The master's `--self-check`: its modules, what uvicorn loads by name, and its migrations run
on a database in memory (the scripts are data files a build must carry)."""

from protocol import selfcheck

# uvicorn picks its event loop, WebSocket protocol and lifespan by name when it starts serving.
LOADED_BY_NAME = (
    "uvicorn.loops.auto",
    "uvicorn.loops.asyncio",
    "uvicorn.protocols.websockets.auto",
    "uvicorn.protocols.websockets.websockets_sansio_impl",
    "uvicorn.lifespan.on",
    "sqlalchemy.dialects.sqlite.pysqlite",
)


def migrations() -> str:
    from sqlalchemy import text

    from master.db.session import Database

    db = Database("sqlite://")
    try:
        db.migrate()
        with db.engine.connect() as conn:
            head = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        db.dispose()
    if not head:
        raise selfcheck.SelfCheckFailed("the migrations left no schema revision")
    return f"{len(Database.known_revisions())} revisions applied in memory, head {head}"


def run() -> int:
    return selfcheck.run("gdos-master", "master", LOADED_BY_NAME, [("migrations", migrations)])
