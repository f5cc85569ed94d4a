"""Liveness for load balancers and scripts: no authentication."""

from fastapi import APIRouter

from protocol import __version__
from protocol.rest import HealthOut

router = APIRouter(tags=["health"])
_HEALTHY = HealthOut(status="ok", version=__version__)


@router.get("/healthz", response_model=HealthOut)
async def healthz() -> HealthOut:
    """On the event loop, not in a worker thread: nothing to wait for, and a master busy with a
    reconnecting fleet still answers as soon as the loop comes round."""
    return _HEALTHY
