"""TLS one flag away: the master serves HTTPS, agents verify it, a wrong certificate is refused."""

import ssl
from pathlib import Path

import httpx
import pytest
import trustme

from tests.support import Agent, Master, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def tls_master(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path, ca_path = tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    ca.cert_pem.write_to_path(str(ca_path))
    m = Master(
        tmp_path / "m",
        extra=["--tls-cert", str(cert_path), "--tls-key", str(key_path)],
        ca_file=ca_path,
    )
    m.launch()
    yield m
    m.stop()


def api_for(m: Master) -> httpx.Client:
    r = httpx.post(
        m.url + "/api/v1/auth/login",
        json={"username": "admin", "password": "test-admin-pw"},
        verify=ssl.create_default_context(cafile=str(m.ca_file)),
    )
    r.raise_for_status()
    return httpx.Client(
        base_url=m.url + "/api/v1",
        verify=ssl.create_default_context(cafile=str(m.ca_file)),
        headers={"Authorization": f"Bearer {r.json()['token']}"},
    )


def test_agent_verifies_the_master_certificate(tls_master, tmp_path):
    client = api_for(tls_master)
    agent = Agent(tls_master, tmp_path / "good", extra=["--ca-cert", str(tls_master.ca_file)])
    agent.start()
    try:
        wait_for(
            lambda: any(n["status"] == "online" for n in client.get("/nodes").json()),
            what=f"TLS agent online\n{agent.tail()}",
        )
    finally:
        agent.stop()


def test_wrong_certificate_is_refused(tls_master, tmp_path):
    other_ca = trustme.CA()
    wrong = tmp_path / "wrong-ca.pem"
    other_ca.cert_pem.write_to_path(str(wrong))
    agent = Agent(tls_master, tmp_path / "bad", extra=["--ca-cert", str(wrong)])
    agent.start()
    try:
        wait_for(
            lambda: (
                "CERTIFICATE_VERIFY_FAILED" in agent.tail(200)
                or "certificate verify failed" in agent.tail(200)
            ),
            timeout=30,
            what="a verification failure",
        )
        assert not (agent.work_dir / "agent-credential.json").exists(), (
            "it must not enrol with an unverified master"
        )
        assert api_for(tls_master).get("/nodes").json() == []
    finally:
        agent.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(tls_master.url + "/healthz", verify=ssl.create_default_context(cafile=str(wrong)))
    with pytest.raises(httpx.HTTPError):
        httpx.get(tls_master.url.replace("https", "http") + "/healthz")
    assert Path(tls_master.ca_file).exists()


async def test_console_verifies_the_master_certificate(tls_master, tmp_path):
    """The console trusts the CA it is given (REST and event stream alike) and nothing else."""
    import asyncio

    from console.client import Client, ClientError, EventStream

    async with Client(tls_master.url, verify=str(tls_master.ca_file)) as good:
        await good.login("admin", "test-admin-pw")
        assert good.user is not None and good.user.username == "admin"
        seen: list[bool] = []
        stream = EventStream(good, on_status=lambda up, reason: seen.append(up))
        task = asyncio.ensure_future(stream.run())
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while not seen and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            assert seen and seen[0] is True, "the event stream did not connect over wss"
        finally:
            stream.stop()
            await asyncio.wait_for(task, 30)

    other_ca = trustme.CA()
    wrong = tmp_path / "wrong-ca.pem"
    other_ca.cert_pem.write_to_path(str(wrong))
    for verify in (str(wrong), True):  # another CA, and the system's CAs
        async with Client(tls_master.url, verify=verify) as bad:
            with pytest.raises(ClientError) as info:
                await bad.login("admin", "test-admin-pw")
            assert info.value.unreachable and "TLS failed" in info.value.message, info.value.message
            assert "certificate verify failed" in info.value.message.lower()
            assert bad.token is None
        reasons: list[str] = []
        stream = EventStream(
            Client(tls_master.url, verify=verify, token="x"),
            on_status=lambda up, reason, seen=reasons: seen.append(reason),
        )
        task = asyncio.ensure_future(stream.run())
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while not reasons and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            assert reasons and "certificate" in reasons[0].lower(), reasons
        finally:
            stream.stop()
            await asyncio.wait_for(task, 30)
