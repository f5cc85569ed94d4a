"""The master's settings: one frozen object built from flags, `GDOS_*` variables and defaults."""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8080
    data_dir: Path = Path(".")
    db_url: str = ""  # derived from db_path when empty
    db_path: Path | None = None  # seed default ./ops_data.db (in data_dir)
    upload_dir: Path | None = None  # seed default ./uploads (in data_dir)
    store_type: Literal["local", "minio"] = "local"
    minio_endpoint: str = ""
    minio_ak: str = ""
    minio_sk: str = ""
    minio_bucket: str = "gdos-packages"
    minio_secure: bool = False
    minio_region: str = "us-east-1"
    admin_password: str | None = None
    token_ttl: float = 12 * 3600.0
    heartbeat_interval: float = 1.0
    heartbeat_grace: float = 3.0  # an agent silent this long is offline
    max_package_size: int = 4 << 30
    max_body_bytes: int = 1 << 20  # JSON request bodies; uploads have max_package_size
    body_timeout: float = 30.0  # a JSON body must arrive within this; an upload may pause this long
    upload_ttl: float = 24 * 3600.0  # an unfinished resumable upload untouched this long expires
    public_url: str = ""  # how agents reach this master; derived from host/port when empty
    advertise_url: str = ""  # this master's URL in the masters table; base_url when empty
    tls_cert: Path | None = None
    tls_key: Path | None = None
    metrics_public: bool = False
    debug_endpoints: bool = False  # /api/v1/debug/*: the master's internals, for benchmarks
    metrics_interval: float | None = None  # sent to agents in `config`; None: each agent's own
    metrics_recent_seconds: int = 600  # per-second samples kept per series
    metrics_history_minutes: int = 120  # per-minute averages kept per series
    metrics_max_series: int = 25_000  # the memory ceiling: beyond it the stalest series go
    log_level: str = "info"
    backup_interval: float = 86400.0  # seconds between scheduled backups; 0 turns them off
    backup_keep: int = 7  # scheduled backups kept (manual and pre-restore ones are not pruned)
    backup_dir: Path | None = None  # default <data-dir>/backups
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def database_url(self) -> str:
        if self.db_url:
            return self.db_url
        return f"sqlite:///{self.sqlite_path}"

    @property
    def sqlite_path(self) -> Path:
        return (self.db_path or self.data_dir / "ops_data.db").absolute()

    @property
    def uploads_path(self) -> Path:
        return (self.upload_dir or self.data_dir / "uploads").absolute()

    @property
    def backup_path(self) -> Path:
        return (self.backup_dir or self.data_dir / "backups").absolute()

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls_cert else "http"
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def advertised_url(self) -> str:
        return self.advertise_url.rstrip("/") or self.base_url

    @property
    def master_id_file(self) -> Path:
        return self.data_dir / "master-id"

    @property
    def admin_password_file(self) -> Path:
        return self.data_dir / "initial-admin-password"

    @property
    def join_token_file(self) -> Path:
        return self.data_dir / "join-token"
