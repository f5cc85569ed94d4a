"""Request dependencies: the app's services, a DB session, and who is calling."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from master.services import accounts
from protocol.errors import ErrorCode, GdosError
from protocol.rest import ROLE_RANK

if TYPE_CHECKING:
    from master.db.session import Database
    from master.services.token_cache import TokenCache
    from master.services.wiring import Services


def services(conn: HTTPConnection) -> "Services":
    return conn.app.state.services  # type: ignore[no-any-return]


async def services_dependency(conn: HTTPConnection) -> "Services":
    """`services` as a dependency. A coroutine so that FastAPI calls it on the event loop: a
    plain function dependency goes through a worker thread, about four loop turns each way,
    which a busy loop (a fan-out, a reconnect storm) makes hundreds of milliseconds."""
    return services(conn)


ServicesDep = Annotated["Services", Depends(services_dependency)]


async def get_session(conn: HTTPConnection) -> AsyncIterator[Session]:
    """The request's session. A failed request lets go of its row locks at once, on the event
    loop: closing runs later in a worker thread the loop must schedule, and loop-side work
    waiting for one of those rows (a hello batch on PostgreSQL) would wait for ever."""
    s = services(conn).db.sessionmaker()
    try:
        yield s
    except BaseException:
        s.rollback()
        raise
    finally:
        await run_in_threadpool(s.close)


SessionDep = Annotated[Session, Depends(get_session)]


@dataclass(frozen=True)
class Principal:
    kind: Literal["user", "node"]
    id: str
    name: str
    role: str = ""  # users only

    @property
    def is_node(self) -> bool:
        return self.kind == "node"


def bearer_token(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def resolve_principal(s: Session, token: str | None) -> Principal | None:
    if not token:
        return None
    user = accounts.user_for_token(s, token)
    if user is not None:
        return Principal("user", user.id, user.username, user.role)
    node = accounts.node_for_secret(s, token)
    if node is not None:
        return Principal("node", node.id, f"node:{node.id}")
    return None


UNAUTHENTICATED = (
    "missing, invalid or expired credentials; log in and send 'Authorization: Bearer <token>'"
)


def authenticated(request: Request, s: SessionDep) -> Principal:
    principal = resolve_principal(s, bearer_token(request))
    if principal is None:
        raise GdosError(ErrorCode.UNAUTHENTICATED, UNAUTHENTICATED)
    request.state.actor = principal.name
    return principal


async def verified(request: Request) -> Principal:
    """The caller, from the credential cache when its token was verified a moment ago; else
    from the database in a worker thread (and remembered). A cached token is verified again
    in the background before its entry expires (`TokenCache.due`)."""
    token = bearer_token(request)
    svc = services(request)
    cache = svc.principals
    principal = cache.get(token) if token else None
    if principal is None and token:
        principal = await run_in_threadpool(_lookup, svc.db, token)
        if principal is not None:
            cache.put(token, principal)
    elif token and cache.due(token):
        _verify_ahead(svc.db, cache, token)
    if principal is None:
        raise GdosError(ErrorCode.UNAUTHENTICATED, UNAUTHENTICATED)
    request.state.actor = principal.name
    return principal


def _lookup(db: "Database", token: str) -> Principal | None:
    with db.session() as s:
        return resolve_principal(s, token)


def _verify_ahead(db: "Database", cache: "TokenCache[Principal]", token: str) -> None:
    """`token`'s principal read again in a worker thread while the request goes on."""

    def done(read: "asyncio.Future[Principal | None]") -> None:
        if read.cancelled() or read.exception() is not None:
            cache.forget(token)  # the next request verifies it itself
            return
        cache.verified_ahead(token, read.result())

    asyncio.get_running_loop().run_in_executor(None, _lookup, db, token).add_done_callback(done)


def check_role(principal: Principal, role: str) -> Principal:
    """The caller, if a user with at least `role`; else 403."""
    if principal.is_node:
        raise GdosError(ErrorCode.FORBIDDEN, "an agent credential cannot call operator routes")
    if ROLE_RANK.get(principal.role, -1) < ROLE_RANK[role]:
        raise GdosError(
            ErrorCode.FORBIDDEN,
            f"this needs the {role} role; you are {principal.role}",
            {"required_role": role},
        )
    return principal


def require_role(role: str) -> Any:
    async def check(principal: Annotated[Principal, Depends(verified)]) -> Principal:
        return check_role(principal, role)

    return Depends(check)


Viewer = Annotated[Principal, require_role("viewer")]
Operator = Annotated[Principal, require_role("operator")]
Admin = Annotated[Principal, require_role("admin")]
AnyPrincipal = Annotated[Principal, Depends(verified)]
