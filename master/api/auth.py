"""Login, users and join tokens."""

import time
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from master.api.deps import Admin, ServicesDep, SessionDep
from master.api.errors import ERROR_RESPONSES
from master.db import models
from master.db.session import get_or_404
from master.services import accounts
from master.services.security import hash_password
from master.services.serializers import user_out
from protocol.errors import ErrorCode, GdosError
from protocol.rest import JoinTokenIn, JoinTokenOut, LoginIn, LoginOut, UserIn, UserOut, iso

router = APIRouter(prefix="/api/v1", tags=["auth"], responses=ERROR_RESPONSES)


@router.post("/auth/login", response_model=LoginOut)
def login(body: LoginIn, request: Request, s: SessionDep, svc: ServicesDep) -> LoginOut:
    request.state.actor = body.username
    request.state.audit_detail = {"username": body.username}
    source = request.client.host if request.client else "?"
    wait = svc.login_throttle.retry_after(source)
    if wait > 0:
        raise GdosError(
            ErrorCode.TOO_MANY_REQUESTS,
            f"too many failed logins from {source}; try again in {wait:.0f} s",
            {"retry_after": round(wait, 1)},
        )
    found = accounts.login(s, body.username, body.password, svc.settings.token_ttl)
    if found is None:
        svc.login_throttle.failed(source)
        raise GdosError(ErrorCode.INVALID_CREDENTIALS, "wrong username or password")
    svc.login_throttle.succeeded(source)
    token, user = found
    return LoginOut(
        token=token, expires_at=iso(time.time() + svc.settings.token_ttl) or "", user=user_out(user)
    )


@router.get("/users", response_model=list[UserOut])
def list_users(_: Admin, s: SessionDep) -> list[UserOut]:
    return [user_out(u) for u in s.scalars(select(models.User).order_by(models.User.username))]


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(body: UserIn, _: Admin, request: Request, s: SessionDep) -> UserOut:
    request.state.audit_target = f"user={body.username}"
    request.state.audit_detail = {"role": body.role}
    if s.scalars(select(models.User).where(models.User.username == body.username)).first():
        raise GdosError(ErrorCode.ALREADY_EXISTS, f"user {body.username} already exists")
    user = models.User(
        username=body.username, password_hash=hash_password(body.password), role=body.role
    )
    s.add(user)
    try:
        s.commit()
    except IntegrityError:  # another master created it since the check
        s.rollback()
        raise GdosError(ErrorCode.ALREADY_EXISTS, f"user {body.username} already exists") from None
    return user_out(user)


@router.delete("/users/{username}", status_code=204, response_class=Response)
def delete_user(
    username: Annotated[str, Path(max_length=64)],
    principal: Admin,
    s: SessionDep,
    svc: ServicesDep,
) -> Response:
    user = s.scalars(select(models.User).where(models.User.username == username)).first()
    if user is None:
        raise GdosError(ErrorCode.NOT_FOUND, f"no user {username}")
    if user.id == principal.id:
        raise GdosError(ErrorCode.CONFLICT, "you cannot delete yourself")
    s.query(models.ApiToken).filter(models.ApiToken.user_id == user.id).delete()
    s.delete(user)
    s.commit()
    svc.principals.forget_all()  # its tokens no longer authenticate, not even a moment
    return Response(status_code=204)


@router.post("/join-tokens", response_model=JoinTokenOut, status_code=201)
def create_join_token(
    principal: Admin, s: SessionDep, body: JoinTokenIn | None = None
) -> JoinTokenOut:
    body = body or JoinTokenIn()
    token, row = accounts.create_join_token(s, body.ttl_seconds, principal.name, body.max_uses)
    return JoinTokenOut(
        id=row.id, token=token, expires_at=iso(row.expires_at), max_uses=row.max_uses, uses=0
    )


@router.delete("/join-tokens/{token_id}", status_code=204, response_class=Response)
def revoke_join_token(
    token_id: Annotated[str, Path(max_length=64)], _: Admin, s: SessionDep
) -> Response:
    row = get_or_404(s, models.JoinToken, token_id, "join token")
    row.revoked = True
    s.commit()
    return Response(status_code=204)
