"""Liveness for load balancers and scripts: no authentication."""

from fastapi import APIRouter

from protocol import __version__
from protocol.rest import HealthOut

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=HealthOut)
def healthz() -> HealthOut:
    return HealthOut(status="ok", version=__version__)
