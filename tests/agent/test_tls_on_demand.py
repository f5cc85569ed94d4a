"""An agent that left OpenSSL out (plain-http master, agent.tls) still probes and downloads
over https: ssl is loaded at the first https URL, hashing stays on Python's own sha256."""

import hashlib
import http.server
import json
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from tests.support import ROOT

BODY = bytes(range(256)) * 4096  # 1 MiB


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/healthz":
                self.send_response(204)
                self.end_headers()
                return
            self.send_response(200 if self.path == "/pkg.zip" else 503)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)

        def log_message(self, *a: object) -> None:
            pass

    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}", ca_file
    server.shutdown()
    server.server_close()


SCRIPT = """
import json, sys
from pathlib import Path
from agent import tls
assert tls.forgo()
import asyncio
import agent.runtime  # everything a running agent imports
from agent import http
before = sorted(m for m in ("ssl", "_hashlib") if sys.modules.get(m))

async def main():
    probe_ok = await http.probe_status(sys.argv[1] + "/healthz", 5)
    probe_down = await http.probe_status(sys.argv[1] + "/down", 5)
    digest = await http.Http(None).download(sys.argv[1] + "/pkg.zip", {}, Path(sys.argv[2]))
    return probe_ok, probe_down, digest

ok, down, digest = asyncio.run(main())
after = sorted(m for m in ("ssl", "_hashlib") if sys.modules.get(m))
print(json.dumps({"before": before, "after": after, "ok": ok, "down": down, "sha": digest}))
"""


def test_https_probe_and_download_without_openssl_at_start(
    https_server: tuple[str, Path], tmp_path: Path
) -> None:
    url, ca_file = https_server
    dest = tmp_path / "pkg.zip"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, url, str(dest)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        # Downloads verify certificates: trust the test CA as a system CA would be trusted.
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "SSL_CERT_FILE": str(ca_file)},
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["before"] == []  # nothing of OpenSSL until the first https URL
    assert got["after"] == ["ssl"]  # ssl then; hashing never needed OpenSSL's _hashlib
    assert (got["ok"], got["down"]) == (204, 503)  # probes do not verify (self-signed is fine)
    assert (
        got["sha"]
        == hashlib.sha256(BODY).hexdigest()
        == hashlib.sha256(dest.read_bytes()).hexdigest()
    )


def test_downloads_verify_the_certificate(https_server: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = https_server
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, url, str(tmp_path / "x.zip")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "SSL_CERT_FILE": "/nonexistent"},
    )
    assert out.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in out.stderr
