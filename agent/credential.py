"""Enrolment: trade the join token for this node's own credential, kept in the work dir (0600)."""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import httpx

from agent.state import atomic_write, read_json
from protocol.messages import HostInfo

log = logging.getLogger(__name__)

CREDENTIAL_FILE = "agent-credential.json"


@dataclass(frozen=True)
class Credential:
    master: str
    node_id: str
    node_secret: str


class EnrollmentRefused(Exception):
    """The master said no (bad, expired or revoked join token): retrying will not help."""


def load(work_dir: Path) -> Credential | None:
    data = read_json(work_dir / CREDENTIAL_FILE)
    if not data:
        return None
    try:
        return Credential(data["master"], data["node_id"], data["node_secret"])
    except KeyError:
        return None


def save(work_dir: Path, cred: Credential) -> None:
    body = {"master": cred.master, "node_id": cred.node_id, "node_secret": cred.node_secret}
    atomic_write(work_dir / CREDENTIAL_FILE, json.dumps(body, indent=1).encode(), mode=0o600)


async def enroll(
    client: httpx.AsyncClient, master: str, join_token: str, host: HostInfo
) -> Credential:
    url = master.rstrip("/") + "/api/v1/agent/enroll"
    resp = await client.post(url, json={"join_token": join_token, "host": host.model_dump()})
    if resp.status_code in (401, 403, 422):
        try:
            message = resp.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = resp.text[:200]
        raise EnrollmentRefused(f"the master refused enrolment: {message}")
    resp.raise_for_status()
    data = resp.json()
    return Credential(master, data["node_id"], data["node_secret"])
