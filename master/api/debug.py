"""The master's internals for benchmarks; served only with `--debug-endpoints`."""

import gc
import time
from typing import Annotated

from fastapi import APIRouter, Query

from master.api.deps import Admin, ServicesDep, Viewer
from master.api.errors import ERROR_RESPONSES
from master.services.loop_lag import PERIOD
from master.start_marks import COUNTS, MARKS
from protocol.monitoring import LoopLagOut, StartUpOut

router = APIRouter(prefix="/api/v1/debug", tags=["debug"], responses=ERROR_RESPONSES)


@router.get("/loop-lag", response_model=LoopLagOut)
async def loop_lag(
    _: Viewer,
    svc: ServicesDep,
    since: Annotated[float, Query(description="only samples after this wall time")] = 0.0,
) -> LoopLagOut:
    """How late the event loop ran its timer, sample by sample (about the last 11 minutes)."""
    return LoopLagOut(period=PERIOD, samples=svc.loop_lag.since(since))


@router.get("/start-up", response_model=StartUpOut)
async def start_up(_: Viewer) -> StartUpOut:
    """When this master reached each phase of its start, and the greetings that followed."""
    return StartUpOut(marks=dict(MARKS), counts=dict(COUNTS), collecting=gc.isenabled())


@router.post("/stall", status_code=204)
async def stall(
    _: Admin,
    seconds: Annotated[float, Query(ge=0, le=30, description="how long to hold the loop")] = 2.0,
) -> None:
    """Hold the event loop busy (computing, as a long turn does) for `seconds`: how a busy
    master's agents fare, for tests and benchmarks."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
