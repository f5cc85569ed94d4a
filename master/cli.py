"""Command-line flags of the master, seed-compatible (`-port :9090 -store_type minio`).

Every flag can also come from a `GDOS_<FLAG>` environment variable (`GDOS_DATA_DIR=...`).
"""

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from master.config import Settings
from protocol.helpformat import DefaultsHelp
from protocol.seedargs import normalize_seed_args

EPILOG = """commands:
  gdos-master restore FILE   put a backup in place of a stopped master's database
                             (see: gdos-master restore --help)

Every flag can also be set with GDOS_<FLAG> (e.g. GDOS_DATA_DIR=/var/lib/gdos)."""


def _env(name: str, default: Any) -> Any:
    return os.environ.get("GDOS_" + name.upper().replace("-", "_"), default)


def _flag(value: str) -> bool:
    return str(value).lower() in ("1", "true", "yes", "on")


def parse_listen(value: str) -> tuple[str | None, int]:
    """`:9090`, `9090`, `127.0.0.1:9090` or `[::1]:9090` -> (host or None, port)."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "", value
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port: {value!r}") from None
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range: {value!r}")
    return host.strip("[]") or None, number


def build_parser() -> argparse.ArgumentParser:
    """Every flag of the master, one `add_argument` each: long, but one flat list reads best."""
    p = argparse.ArgumentParser(
        prog="gdos-master",
        description="GDOS master: REST + WebSocket API for agents and the console.",
        epilog=EPILOG,
        formatter_class=DefaultsHelp,
    )
    p.add_argument("--version", action="store_true", help="print version and build info, exit")
    p.add_argument(
        "--self-check",
        action="store_true",
        help="import every module and run the migrations in memory; exit 1 naming what failed",
    )
    add = p.add_argument
    add("--port", default=_env("port", ":8080"), help="listen address, ':8080' or 'host:port'")
    add(
        "--host",
        default=_env("host", None),
        help="interface to bind (default: the host in --port, else all interfaces)",
    )
    add(
        "--data-dir",
        type=Path,
        default=Path(_env("data-dir", ".")),
        help="state directory: database, packages, backups, join token, admin password",
    )
    add(
        "--db-path",
        type=Path,
        default=_env("db-path", None),
        help="SQLite file (default: <data-dir>/ops_data.db)",
    )
    add(
        "--db-url",
        default=_env("db-url", ""),
        help="SQLAlchemy URL, e.g. postgresql+psycopg://... (default: SQLite at --db-path)",
    )
    add(
        "--upload-dir",
        type=Path,
        default=_env("upload-dir", None),
        help="package directory (default: <data-dir>/uploads)",
    )
    add(
        "--store-type",
        choices=["local", "minio"],
        default=_env("store-type", "local"),
        help="where packages are kept: local (--upload-dir) or minio (MinIO or S3)",
    )
    add(
        "--minio-endpoint",
        default=_env("minio-endpoint", ""),
        help="host:port of MinIO/S3 (default: none; needed with --store-type minio)",
    )
    add("--minio-ak", default=_env("minio-ak", ""), help="access key (default: $GDOS_MINIO_AK)")
    add("--minio-sk", default=_env("minio-sk", ""), help="secret key (default: $GDOS_MINIO_SK)")
    add("--minio-bucket", default=_env("minio-bucket", "gdos-packages"), help="bucket of packages")
    add(
        "--minio-secure",
        action="store_true",
        default=_flag(_env("minio-secure", "")),
        help="HTTPS to MinIO",
    )
    add(
        "--minio-region",
        default=_env("minio-region", "us-east-1"),
        help="region the bucket lives in (presigned URLs are signed for it)",
    )
    add(
        "--admin-password",
        default=_env("admin-password", None),
        help="password of the first admin (default: $GDOS_ADMIN_PASSWORD, else one is generated "
        "and written to <data-dir>/initial-admin-password)",
    )
    add(
        "--admin-password-file",
        type=Path,
        default=_env("admin-password-file", None),
        help="read the first admin password from this file, keeping it out of the process list "
        "(default: $GDOS_ADMIN_PASSWORD_FILE, else none)",
    )
    add(
        "--token-ttl",
        type=float,
        default=float(_env("token-ttl", 12 * 3600)),
        help="login lifetime, s",
    )
    add(
        "--heartbeat-interval",
        type=float,
        default=float(_env("heartbeat-interval", 1.0)),
        help="seconds between the heartbeats agents send while they send no metrics",
    )
    add(
        "--heartbeat-grace",
        type=float,
        default=float(_env("heartbeat-grace", 3.0)),
        help="seconds of silence before an agent is offline",
    )
    add(
        "--max-package-size",
        type=int,
        default=int(_env("max-package-size", 4 << 30)),
        help="largest package upload, bytes",
    )
    add(
        "--max-body-bytes",
        type=int,
        default=int(_env("max-body-bytes", 1 << 20)),
        help="largest JSON request body, bytes (package uploads have --max-package-size)",
    )
    add(
        "--body-timeout",
        type=float,
        default=float(_env("body-timeout", 30)),
        help="seconds a JSON request body may take to arrive, and an upload may pause",
    )
    add(
        "--upload-ttl",
        type=float,
        default=float(_env("upload-ttl", 24 * 3600)),
        help="seconds an unfinished resumable upload is kept after its last byte",
    )
    add(
        "--public-url",
        default=_env("public-url", ""),
        help="URL agents use to reach this master (default: http(s)://<host>:<port> as listened "
        "on, 127.0.0.1 for all interfaces)",
    )
    add(
        "--advertise-url",
        default=_env("advertise-url", ""),
        help="URL of this master as the other masters and GET /api/v1/masters show it "
        "(default: --public-url, else as listened on)",
    )
    add(
        "--tls-cert",
        type=Path,
        default=_env("tls-cert", None),
        help="certificate chain (PEM) to serve HTTPS (default: none, plain HTTP)",
    )
    add(
        "--tls-key",
        type=Path,
        default=_env("tls-key", None),
        help="private key (PEM) of --tls-cert (default: none)",
    )
    add(
        "--metrics-public",
        action="store_true",
        default=_flag(_env("metrics-public", "")),
        help="serve GET /metrics (Prometheus) without a token",
    )
    add(
        "--debug-endpoints",
        action="store_true",
        default=_flag(_env("debug-endpoints", "")),
        help="serve /api/v1/debug/* (the event loop's lag samples, for benchmarks)",
    )
    add(
        "--metrics-interval",
        type=float,
        default=_env("metrics-interval", None),
        help="seconds between agents' samples, for every agent (default: each agent's own, 1)",
    )
    add(
        "--metrics-recent-seconds",
        type=int,
        default=int(_env("metrics-recent-seconds", 600)),
        help="per-second samples kept in memory per series",
    )
    add(
        "--metrics-history-minutes",
        type=int,
        default=int(_env("metrics-history-minutes", 120)),
        help="per-minute averages kept in memory per series",
    )
    add(
        "--metrics-max-series",
        type=int,
        default=int(_env("metrics-max-series", 25_000)),
        help="at most this many series (nodes + instances) in memory; the stalest go first",
    )
    add(
        "--log-level",
        default=_env("log-level", "info"),
        choices=["debug", "info", "warning", "error"],
        help="how much the master logs",
    )
    add(
        "--backup-interval",
        type=float,
        default=float(_env("backup-interval", 86400)),
        help="seconds between scheduled backups of the SQLite database (0: none)",
    )
    add(
        "--backup-keep",
        type=int,
        default=int(_env("backup-keep", 7)),
        help="scheduled backups to keep (older ones are deleted)",
    )
    add(
        "--backup-dir",
        type=Path,
        default=_env("backup-dir", None),
        help="folder of backups (default: <data-dir>/backups)",
    )
    add(
        "--with-agent",
        action="store_true",
        default=_flag(_env("with-agent", "")),
        help="also run a local agent, enrolled automatically (work dir <data-dir>/agent)",
    )
    return p


KNOWN_FLAGS = [a.option_strings[0].lstrip("-") for a in build_parser()._actions if a.option_strings]


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    return build_parser().parse_args(normalize_seed_args(argv, KNOWN_FLAGS))


def admin_password(args: argparse.Namespace) -> str | None:
    """`--admin-password`, else the first line of `--admin-password-file`, else None."""
    if args.admin_password or args.admin_password_file is None:
        return str(args.admin_password) if args.admin_password else None
    try:
        text = Path(args.admin_password_file).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SystemExit(
            f"gdos-master: cannot read the admin password file {args.admin_password_file}: "
            f"{exc.strerror or exc}"
        ) from None
    return text or None


def settings_from_args(args: argparse.Namespace) -> Settings:
    host, port = parse_listen(str(args.port))
    return Settings(
        host=args.host or host or "0.0.0.0",
        port=port,
        data_dir=args.data_dir.absolute(),
        db_url=args.db_url,
        db_path=Path(args.db_path) if args.db_path else None,
        upload_dir=Path(args.upload_dir) if args.upload_dir else None,
        store_type=args.store_type,
        minio_endpoint=args.minio_endpoint,
        minio_ak=args.minio_ak,
        minio_sk=args.minio_sk,
        minio_bucket=args.minio_bucket,
        minio_secure=args.minio_secure,
        minio_region=args.minio_region,
        admin_password=admin_password(args),
        token_ttl=args.token_ttl,
        heartbeat_interval=args.heartbeat_interval,
        heartbeat_grace=args.heartbeat_grace,
        max_package_size=args.max_package_size,
        max_body_bytes=args.max_body_bytes,
        body_timeout=args.body_timeout,
        upload_ttl=args.upload_ttl,
        public_url=args.public_url,
        advertise_url=args.advertise_url,
        tls_cert=Path(args.tls_cert) if args.tls_cert else None,
        tls_key=Path(args.tls_key) if args.tls_key else None,
        metrics_public=args.metrics_public,
        debug_endpoints=args.debug_endpoints,
        metrics_interval=None if args.metrics_interval is None else float(args.metrics_interval),
        metrics_recent_seconds=args.metrics_recent_seconds,
        metrics_history_minutes=args.metrics_history_minutes,
        metrics_max_series=args.metrics_max_series,
        log_level=args.log_level,
        backup_interval=args.backup_interval,
        backup_keep=args.backup_keep,
        backup_dir=Path(args.backup_dir) if args.backup_dir else None,
    )
