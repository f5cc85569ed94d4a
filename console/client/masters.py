"""Several masters sharing one database: the URL list, which one to try next, how long to wait,
and which failures of a request mean "this master is gone" (no Qt here)."""

from __future__ import annotations

import random
import ssl

import httpx

BACKOFF_MIN = 0.5  # seconds; the waits between tries grow from here...
BACKOFF_MAX = 10.0  # ...to at most this, with full jitter


def split_urls(text: str) -> list[str]:
    """`http://a:8080,http://b:8080` (or one URL) as the master URLs in order, without a trailing
    slash or repeats; ValueError with a sentence when one is not an http(s) URL."""
    urls: list[str] = []
    for part in text.split(","):
        url = part.strip().rstrip("/")
        if not url:
            continue
        if not url.startswith(("http://", "https://")) or not url.split("://", 1)[1]:
            raise ValueError(f"{url!r} is not a master URL: it starts with http:// or https://")
        if url not in urls:
            urls.append(url)
    if not urls:
        raise ValueError("give the master's URL (several, for several masters: URL1,URL2)")
    return urls


def join_urls(urls: list[str]) -> str:
    return ",".join(urls)


def after(urls: list[str], current: str) -> list[str]:
    """The URLs to try when `current` is lost: the next ones in order, round the list, `current`
    last (it may be back by then)."""
    if current not in urls:
        return list(urls)
    i = urls.index(current)
    return urls[i + 1 :] + urls[:i] + [current]


def backoff(attempt: int) -> float:
    """Seconds to wait before try `attempt` (0 first): full jitter, so that many consoles that
    lost the same master do not all arrive on the next one at the same instant."""
    return random.uniform(0, min(BACKOFF_MAX, BACKOFF_MIN * 2**attempt))


def is_gone(exc: httpx.HTTPError) -> bool:
    """A request failed because the master is not there (refused, cut, reset), not because it
    was slow (a timeout: a hung master is left by the event stream's keepalive) or because of
    TLS (a certificate problem is the same on every master)."""
    if isinstance(exc, httpx.TimeoutException):
        return False
    if isinstance(exc.__cause__, ssl.SSLError) or "CERTIFICATE" in str(exc).upper():
        return False
    return isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError)
