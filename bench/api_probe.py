"""An outside API probe: `GET /api/v1/nodes` timed every `--interval` seconds, one request at a
time, from its own process (so the figures include everything a console's call waits for).

    .venv/bin/python -m bench.api_probe --url http://127.0.0.1:8080 --token <user token> \\
        --out probe.csv

Each request appends `wall time at send,milliseconds,status` to `--out` (status 0: no answer,
e.g. while the master restarts). It runs until it is terminated.
"""

import argparse
import time

import httpx


def probe(url: str, token: str, out: str, interval: float, timeout: float) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    with (
        open(out, "a", buffering=1) as sink,  # a line per request, readable at any time
        httpx.Client(base_url=url, headers=headers, timeout=timeout) as client,
    ):
        next_at = time.monotonic()
        while True:
            sent, began = time.time(), time.perf_counter()
            try:
                status = client.get("/api/v1/nodes").status_code
            except httpx.HTTPError:
                status = 0
            sink.write(f"{sent:.3f},{(time.perf_counter() - began) * 1000:.1f},{status}\n")
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at, time.monotonic())  # a slow answer delays, never bunches


def read(path: str) -> list[tuple[float, float, int]]:
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) == 3:
                rows.append((float(parts[0]), float(parts[1]), int(parts[2])))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--interval", type=float, default=0.1)
    p.add_argument("--timeout", type=float, default=10.0)
    a = p.parse_args()
    probe(a.url, a.token, a.out, a.interval, a.timeout)


if __name__ == "__main__":
    main()
