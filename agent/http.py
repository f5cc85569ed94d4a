"""The agent's HTTP client: enrolment, package downloads and health probes.

urllib in worker threads rather than an async HTTP library: the agent makes a handful of
requests (one enrolment, one download per deploy, probes) and its memory is paid on every
host, where httpx and its dependencies would cost several MiB. Environment proxies are ignored,
like on the agent's WebSocket: the agent talks to its master (or the master's object store)
directly.
"""

import asyncio
import hashlib
import http.client
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

from agent import tls

if TYPE_CHECKING:
    import ssl

_CHUNK = 1 << 20
# Dedicated threads: a hanging probe or a slow download must not hold up the default executor
# the agent saves its state with.
_pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="gdos-http")


class HttpError(Exception):
    """No usable answer: `status` is the HTTP status when there was one, else None."""

    def __init__(self, message: str, status: int | None = None, body: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class _TlsConnection(http.client.HTTPConnection):
    default_port = 443

    def __init__(self, host: str, *, context: "ssl.SSLContext", **kw: Any) -> None:
        super().__init__(host, **kw)
        self._context = context

    def connect(self) -> None:
        super().connect()
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


class HttpsHandler(urllib.request.AbstractHTTPHandler):
    """urllib's https, whether or not `ssl` was there when urllib was imported (agent.tls)."""

    handler_order = 499  # ahead of urllib's own HTTPSHandler, where that exists

    def __init__(self, context: "ssl.SSLContext | None" = None, *, verify: bool = True) -> None:
        super().__init__()
        self._context = context
        self._verify = verify

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        if self._context is None:  # the first https URL: only now is OpenSSL needed
            self._context = tls.verifying() if self._verify else tls.unverified()
        # context= reaches the connection as it does urllib's own HTTPSConnection
        return self.do_open(_TlsConnection, req, context=self._context)  # type: ignore[arg-type]

    https_request = urllib.request.AbstractHTTPHandler.do_request_


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a probe judges the answer it got; a 3xx is not healthy


def _opener(
    context: "ssl.SSLContext | None", follow_redirects: bool, verify: bool = True
) -> urllib.request.OpenerDirector:
    handlers: list[urllib.request.BaseHandler] = [
        urllib.request.ProxyHandler({}),
        HttpsHandler(context, verify=verify),  # ssl is loaded at the first https URL
    ]
    if not follow_redirects:
        handlers.append(_NoRedirect())
    return urllib.request.build_opener(*handlers)


async def _in_thread(fn: Any, *args: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_pool, fn, *args)


def _checked(url: str) -> str:
    # urllib would also open file:// and ftp:// URLs; only HTTP belongs here.
    if not url.lower().startswith(("http://", "https://")):
        raise HttpError(f"not an http(s) URL: {url[:100]!r}")
    return url


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


class Http:
    def __init__(self, context: "ssl.SSLContext | None" = None) -> None:
        self._opener = _opener(context, follow_redirects=True)
        self._direct = _opener(context, follow_redirects=False)  # downloads follow by hand

    def _open(self, request: urllib.request.Request, timeout: float) -> Any:
        try:
            return self._opener.open(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            body = exc.read()
            raise HttpError(f"HTTP {exc.code}", exc.code, body) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise HttpError(_describe(exc)) from None

    async def post_json(self, url: str, body: dict[str, Any], timeout: float = 30.0) -> Any:
        """POST JSON, return the decoded answer; HttpError carries status and body otherwise."""

        def go() -> Any:
            request = urllib.request.Request(  # noqa: S310 - scheme checked by _checked
                _checked(url),
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with self._open(request, timeout) as resp:
                return json.loads(resp.read())

        return await _in_thread(go)

    async def download(
        self, url: str, headers: dict[str, str], dest: Path, timeout: float = 300.0
    ) -> str:
        """Stream `url` into `dest` in one attempt (following redirects); returns its sha256."""
        progress = Progress()
        try:
            await self.fetch_into(url, headers, dest, progress, timeout)
        except (HttpError, OSError):
            dest.unlink(missing_ok=True)
            raise
        return progress.sha256.hexdigest()

    async def fetch_into(
        self, url: str, headers: dict[str, str], dest: Path, progress: "Progress", timeout: float
    ) -> None:
        """One attempt at `url` into `dest`, resuming at `progress.got` with a Range request.

        A store that ignores the Range (200) starts the file again. Redirects are followed
        here, not by urllib, to know which host failed (`progress.source`) and never to send
        the node's credential to another host (an object store's presigned URL)."""
        await _in_thread(self._fetch, url, headers, dest, progress, timeout)

    def _fetch(
        self, url: str, headers: dict[str, str], dest: Path, progress: "Progress", timeout: float
    ) -> None:
        for _ in range(_MAX_REDIRECTS + 1):
            progress.source = urlsplit(url).netloc
            sent = dict(headers)
            if progress.got:
                sent["Range"] = f"bytes={progress.got}-"
            request = urllib.request.Request(_checked(url), headers=sent)  # noqa: S310
            try:
                resp = self._direct.open(request, timeout=timeout)
            except urllib.error.HTTPError as exc:
                if exc.code in _REDIRECTS and exc.headers.get("Location"):
                    target = urljoin(url, exc.headers["Location"])
                    exc.close()
                    if urlsplit(target).netloc != urlsplit(url).netloc:
                        headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                    url = target
                    continue
                if exc.code == 416 and progress.got:  # the range is past the end: start again
                    exc.close()
                    progress.restart()
                    raise HttpError("the store refused to resume; starting again", 503) from None
                body = exc.read()
                raise HttpError(f"HTTP {exc.code}", exc.code, body) from None
            except (urllib.error.URLError, OSError, ValueError) as exc:
                raise HttpError(_describe(exc)) from None
            with resp:
                _receive(resp, dest, progress)
            return
        raise HttpError(f"more than {_MAX_REDIRECTS} redirects")


_MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)


class Progress:
    """A download across attempts: the bytes in the file so far and their running sha256."""

    def __init__(self) -> None:
        self.got = 0
        self.total: int | None = None
        self.sha256 = hashlib.sha256()
        self.source = ""  # host[:port] of the last request (the master, or an object store)

    def restart(self) -> None:
        self.got, self.total, self.sha256 = 0, None, hashlib.sha256()


def _content_range_start(value: str | None) -> int | None:
    """`bytes 100-199/200` -> 100."""
    if not value or not value.startswith("bytes "):
        return None
    first = value[6:].split("-", 1)[0].strip()
    return int(first) if first.isascii() and first.isdigit() else None


def _receive(resp: Any, dest: Path, progress: Progress) -> None:
    if (
        resp.status == 206
        and _content_range_start(resp.headers.get("Content-Range")) == progress.got
    ):
        mode = "r+b"  # resume where the file ends
    elif resp.status == 200:
        progress.restart()  # no Range support (or none asked): the whole file again
        mode = "wb"
    elif resp.status == 206:
        progress.restart()
        raise HttpError("the store answered another range than asked; starting again")
    else:
        raise HttpError(f"HTTP {resp.status}", resp.status)
    length = resp.headers.get("Content-Length")
    size = _CHUNK
    if length and length.isascii() and length.isdigit():
        progress.total = progress.got + int(length)
        size = min(size, int(length))  # a small package: a small buffer
    # One buffer for the whole body: a fresh 1 MiB block per chunk is mapped and unmapped
    # each time (the agent keeps glibc's mmap threshold low, see agent.limits).
    buffer = memoryview(bytearray(size))
    with open(dest, mode) as f:
        f.seek(progress.got)
        f.truncate()
        while n := _read_into(resp, buffer, progress):
            chunk = buffer[:n]
            f.write(chunk)
            progress.sha256.update(chunk)
            progress.got += n
    # read(n) ends quietly when the connection drops early: say so, rather than leave it to
    # the checksum to call the package corrupted.
    if progress.total is not None and progress.got < progress.total:
        raise HttpError(f"connection closed after {progress.got} of {progress.total} bytes")


def _read_into(resp: Any, buffer: memoryview, progress: Progress) -> int:
    """The next chunk of the body into `buffer` (its length; 0 at the end); a reset or a stall
    mid-body is a lost connection (retried from where it stopped), not an error writing the file."""
    try:
        return resp.readinto(buffer)  # type: ignore[no-any-return]
    except (OSError, http.client.HTTPException) as exc:
        raise HttpError(f"connection lost after {progress.got} bytes: {_describe(exc)}") from None


# Health probes: like Kubernetes' httpGet probes, certificates are not verified (internal
# endpoints often use self-signed ones) and redirects are not followed; a probe asks "does
# it answer 2xx", not "is it who it says".
_probe_opener: urllib.request.OpenerDirector | None = None


def _probes() -> urllib.request.OpenerDirector:
    global _probe_opener
    if _probe_opener is None:  # built on first use: most agents never probe over HTTP
        _probe_opener = _opener(None, follow_redirects=False, verify=False)
    return _probe_opener


async def probe_status(url: str, timeout: float) -> int:
    """The HTTP status `GET url` answers; HttpError when there is no answer."""

    def go() -> int:
        try:
            with _probes().open(_checked(url), timeout=timeout) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise HttpError(_describe(exc)) from None

    return int(await _in_thread(go))
