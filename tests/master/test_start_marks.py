"""A master's start in phases (`/debug/start-up`, for the restart benchmark): the port is taken
before the database and the application are loaded, and the greetings that follow are counted."""

import asyncio

from bench.fleet import connected_agents
from tests.support import wait_for

PHASES = (
    "main",
    "listening",
    "database_checked",
    "imported",
    "app_created",
    "prepared",
    "routes_built",
    "services_started",
    "serving",
)


def test_the_start_is_marked_in_order_and_each_greeting_counted(master_factory):
    master = master_factory(extra=["--debug-endpoints"])
    api = master.api()
    before = api.get("/debug/start-up")
    marks = before["marks"]
    assert [p for p in PHASES if p in marks] == list(PHASES), marks
    assert [marks[p] for p in PHASES] == sorted(marks[p] for p in PHASES), marks
    assert "first_hello" not in marks and before["counts"] == {}
    assert before["collecting"], "the collector is off only until the master serves"

    def greeted() -> dict | None:
        body = api.get("/debug/start-up")
        return body if body["counts"].get("greeted") == 3 else None

    async def greet() -> dict:
        async with connected_agents(master.url, master.join_token, ["m-1", "m-2", "m-3"]):
            return await asyncio.to_thread(wait_for, greeted, 30, what="three greetings")

    after = asyncio.run(greet())
    assert after["counts"] == {"hellos_applied": 3, "greeted": 3}, after
    marks = after["marks"]
    assert marks["serving"] <= marks["first_agent_socket"] <= marks["first_hello"]
    assert marks["first_hello"] <= marks["hellos_applied"] <= marks["greeted"]
