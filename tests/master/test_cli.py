from master.cli import parse_args, parse_listen, settings_from_args
from protocol.seedargs import normalize_seed_args


def test_seed_command_line_keeps_working():
    args = parse_args(
        [
            "-port",
            ":9090",
            "-store_type",
            "minio",
            "-minio_endpoint",
            "s3:9000",
            "-minio_bucket",
            "b",
            "-db_path",
            "x.db",
            "-upload_dir",
            "up",
        ]
    )
    s = settings_from_args(args)
    assert (s.host, s.port) == ("0.0.0.0", 9090)
    assert s.store_type == "minio" and s.minio_endpoint == "s3:9000" and s.minio_bucket == "b"
    assert s.sqlite_path.name == "x.db" and s.uploads_path.name == "up"
    assert s.minio_secure is False


def test_defaults_match_the_seed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = settings_from_args(parse_args([]))
    assert s.port == 8080
    assert s.sqlite_path == tmp_path / "ops_data.db"
    assert s.uploads_path == tmp_path / "uploads"


def test_environment_sets_options(monkeypatch, tmp_path):
    monkeypatch.setenv("GDOS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("GDOS_PORT", "127.0.0.1:7000")
    s = settings_from_args(parse_args([]))
    assert s.data_dir == tmp_path and (s.host, s.port) == ("127.0.0.1", 7000)


def test_listen_forms():
    assert parse_listen(":80") == (None, 80)
    assert parse_listen("8080") == (None, 8080)
    assert parse_listen("[::1]:9000") == ("::1", 9000)


def test_normalize_leaves_values_alone():
    argv = ["-work_dir", "/x", "--autostart", "-1", "-q"]
    assert normalize_seed_args(argv, ["work-dir", "autostart"]) == [
        "--work-dir",
        "/x",
        "--autostart",
        "-1",
        "-q",
    ]
    assert normalize_seed_args(["--upload_dir=u"], ["upload-dir"]) == ["--upload-dir=u"]


def test_body_limits_come_from_flags_and_environment(monkeypatch):
    s = settings_from_args(parse_args([]))
    assert (s.max_body_bytes, s.body_timeout) == (1 << 20, 30.0)
    s = settings_from_args(parse_args(["--max-body-bytes", "4096", "--body-timeout", "5"]))
    assert (s.max_body_bytes, s.body_timeout) == (4096, 5.0)
    monkeypatch.setenv("GDOS_MAX_BODY_BYTES", "2048")
    monkeypatch.setenv("GDOS_BODY_TIMEOUT", "7.5")
    s = settings_from_args(parse_args([]))
    assert (s.max_body_bytes, s.body_timeout) == (2048, 7.5)


def test_help_gives_every_flag_a_meaning_and_a_default_and_lists_restore():
    from agent.__main__ import build_parser as agent_parser
    from master.cli import build_parser as master_parser
    from protocol.helpformat import undocumented

    assert undocumented(master_parser()) == []
    assert undocumented(agent_parser()) == []
    text = " ".join(master_parser().format_help().split())
    assert "gdos-master restore FILE" in text
    assert "(default: :8080)" in text and "(default: <data-dir>/ops_data.db)" in text
    assert "(default: ./instances" in " ".join(agent_parser().format_help().split())


def test_help_never_prints_a_secret_from_the_environment(monkeypatch):
    from master.cli import build_parser

    monkeypatch.setenv("GDOS_ADMIN_PASSWORD", "s3cret-pw")
    monkeypatch.setenv("GDOS_MINIO_SK", "s3cret-key")
    text = build_parser().format_help()
    assert "s3cret" not in text
