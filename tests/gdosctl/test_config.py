"""Contexts: the file (0600), the current one, GDOS_MASTER/GDOS_TOKEN, an expired token."""

import stat

import pytest

from gdosctl import config
from gdosctl.errors import NOT_AUTHORISED, USAGE, CtlError


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    for name in ("GDOS_MASTER", "GDOS_TOKEN", "GDOS_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def saved(**contexts):
    cfg = config.Config(current=next(iter(contexts), ""), contexts=contexts)
    cfg.save()
    return cfg


def test_the_file_is_private_and_reads_back(home):
    saved(
        prod=config.Context(
            "https://gdos.example:8443", "ops", "tok", "2999-01-01T00:00:00Z", "/ca.pem"
        )
    )
    path = home / "gdos" / "config.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    cfg = config.Config.load()
    assert cfg.current == "prod" and cfg.contexts["prod"].ca_file == "/ca.pem"
    target = config.resolve_target(cfg)
    assert (target.master, target.token, target.ca_file, target.context) == (
        "https://gdos.example:8443",
        "tok",
        "/ca.pem",
        "prod",
    )


def test_the_environment_overrides_the_file(monkeypatch):
    saved(
        prod=config.Context("http://a:8080", token="file-token", expires_at="2999-01-01T00:00:00Z")
    )
    monkeypatch.setenv("GDOS_TOKEN", "env-token")
    assert config.resolve_target(config.Config.load()).token == "env-token"
    monkeypatch.setenv("GDOS_MASTER", "http://ci:9000/")
    target = config.resolve_target(config.Config.load())
    assert (target.master, target.token, target.context) == ("http://ci:9000", "env-token", "")
    monkeypatch.delenv("GDOS_TOKEN")
    monkeypatch.setenv("GDOS_MASTER", "http://a:8080")  # a known master: its context's token
    assert config.resolve_target(config.Config.load()).token == "file-token"


def test_an_expired_token_says_how_to_log_in_again():
    saved(prod=config.Context("http://a:8080", token="old", expires_at="2001-01-01T00:00:00Z"))
    with pytest.raises(CtlError) as info:
        config.resolve_target(config.Config.load())
    assert info.value.code == NOT_AUTHORISED
    assert info.value.message == "your session expired; run `gdosctl login http://a:8080`"


def test_no_login_and_an_unknown_context():
    with pytest.raises(CtlError) as info:
        config.resolve_target(config.Config.load())
    assert info.value.code == NOT_AUTHORISED and "gdosctl login" in info.value.message
    with pytest.raises(CtlError) as info:
        config.resolve_target(config.Config.load(), context="nope")
    assert info.value.code == USAGE
