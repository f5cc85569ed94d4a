"""A master on S3 and PostgreSQL imports neither httpx's command line nor minio's admin client,
and both packages still work (tests in a fresh interpreter: this one imported them already)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HEAVY = ("rich", "pygments", "argon2", "Crypto", "cffi")

PROBE = """
import json, sys
import master.storage.multipart, master.storage.s3, master.services.forwarding
after_store = sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:]) | {m for m in sys.modules if m in ('httpx', 'minio.minioadmin')})
from master.lean_imports import load_httpx
load_httpx()
import httpx
after_httpx = sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:]))
from minio import Minio
client = Minio('127.0.0.1:9', access_key='a', secret_key='b', secure=False, region='us-east-1')
url = client.presigned_get_object('bucket', 'key')
import minio.minioadmin
print(json.dumps({
    'after_store': after_store,
    'after_httpx': after_httpx,
    'httpx_client': httpx.AsyncClient.__name__,
    'presigned': url.startswith('http://127.0.0.1:9/bucket/key?'),
    'admin': minio.minioadmin.MinioAdmin.__name__,
}))
"""


def _probe() -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *HEAVY],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_s3_store_and_forwarding_leave_out_what_a_master_never_uses() -> None:
    found = _probe()
    assert found["after_store"] == []  # no httpx until a peer's history is asked, no admin client
    assert found["after_httpx"] == []  # httpx without rich, Pygments (its command line)
    assert found["httpx_client"] == "AsyncClient"
    assert found["presigned"] is True  # minio signs without its admin client
    assert found["admin"] == "MinioAdmin"  # the real one when asked for
