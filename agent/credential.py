"""Enrolment: trade the join token for this node's own credential, kept in the work dir (0600)."""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from agent.http import Http, HttpError
from agent.state import atomic_write, read_json
from protocol.messages import HostInfo

log = logging.getLogger(__name__)

CREDENTIAL_FILE = "agent-credential.json"


@dataclass(frozen=True)
class Credential:
    master: str  # the first master URL (the one field an older agent reads)
    node_id: str
    node_secret: str
    masters: tuple[str, ...] = ()  # every master URL, in the order given; empty: `master` only

    @property
    def urls(self) -> tuple[str, ...]:
        return self.masters or (self.master,)


class EnrollmentRefused(Exception):
    """The master said no (bad, expired or revoked join token): retrying will not help."""


def load(work_dir: Path) -> Credential | None:
    data = read_json(work_dir / CREDENTIAL_FILE)
    if not data:
        return None
    try:
        masters = tuple(str(u) for u in data.get("masters") or ())
        return Credential(data["master"], data["node_id"], data["node_secret"], masters)
    except (KeyError, TypeError):
        return None


def save(work_dir: Path, cred: Credential) -> None:
    body = {
        "master": cred.master,
        "masters": list(cred.urls),
        "node_id": cred.node_id,
        "node_secret": cred.node_secret,
    }
    atomic_write(work_dir / CREDENTIAL_FILE, json.dumps(body, indent=1).encode(), mode=0o600)


async def enroll(http: Http, master: str, join_token: str, host: HostInfo) -> Credential:
    """Trade the join token for this node's credential. EnrollmentRefused when the master says
    no (retrying will not help); HttpError when it cannot be reached (retry later)."""
    url = master.rstrip("/") + "/api/v1/agent/enroll"
    try:
        data = await http.post_json(url, {"join_token": join_token, "host": host.to_dict()})
    except HttpError as exc:
        if exc.status in (401, 403, 422):
            try:
                message = json.loads(exc.body)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = exc.body[:200].decode(errors="replace")
            raise EnrollmentRefused(f"the master refused enrolment: {message}") from None
        raise
    return Credential(master, data["node_id"], data["node_secret"])
