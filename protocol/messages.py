"""Messages on the agent channel (one WebSocket per node, JSON text frames with a `type`).

Requests carry `id`; the agent answers each with a `result` carrying `reply_to`.
Times on this channel are UNIX seconds (floats); the REST API speaks ISO 8601.

These are msgspec Structs, not pydantic models: the agent must stay small and the master
decodes every sample of its fleet. Unknown fields are ignored and unknown message types fail
to decode, so newer peers stay readable.
"""

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from protocol.manifest import HealthCheck
from protocol.states import HealthState, InstanceState
from protocol.wire import Struct

RestartMode = Literal["no", "on-failure", "always"]


class Message(Struct, tag_field="type", kw_only=True):
    """A top-level message; its class's tag is the `type` on the wire."""

    @property
    def type(self) -> str:
        return str(type(self).__struct_config__.tag)


class HostInfo(Struct):
    hostname: str
    ip: str = ""
    os: str = ""
    arch: str = ""
    mac: str = ""
    cpu_count: int = 0
    mem_total: int = 0
    disk_total: int = 0
    disk_free: int = 0
    platform: str = ""


class Load(Struct):
    cpu_percent: float = 0.0
    mem_percent: float = 0.0
    disk_percent: float = 0.0
    load1: float = 0.0


class InstanceReport(Struct):
    """What the agent knows of one instance; sent in `hello` and as `instance_state`."""

    instance_id: str
    state: InstanceState
    pid: int | None = None
    create_time: float | None = None
    started_at: float | None = None
    exit_code: int | None = None
    error: str | None = None
    restarts: int = 0
    health: HealthState = HealthState.UNKNOWN
    adopted: bool = False
    health_detail: str | None = None  # what the last probe said (why it is unhealthy)
    user: str | None = None  # the account its process runs as (or will run as)
    # The release it runs (or would start): its package version and release folder name.
    version: str | None = None
    release: str | None = None


class WireError(Struct):
    code: str
    message: str
    details: dict[str, Any] = {}


# Agent -> master


class Hello(Message, tag="hello"):
    agent_version: str
    host: HostInfo
    instances: list[InstanceReport] = []


class Heartbeat(Message, tag="heartbeat"):
    ts: float
    load: Load = msgspec.field(default_factory=Load)


class InstanceStateMsg(InstanceReport, Message, tag="instance_state"):
    """One `InstanceReport` as a message of its own."""

    @classmethod
    def of(cls, report: InstanceReport) -> "InstanceStateMsg":
        return cls(**msgspec.structs.asdict(report))


class InstanceStates(Message, tag="instance_states"):
    """Several `instance_state` reports at once: what changed in one turn of the agent's loop."""

    reports: list[InstanceReport]


# Column order of the positional rows in `Metrics` (shared by the agent and the master).
NODE_FIELDS = ("cpu_percent", "mem_percent", "disk_percent", "net_rx_bps", "net_tx_bps", "load1")
INSTANCE_FIELDS = ("cpu_percent", "rss_bytes", "read_bps", "write_bps", "threads")
MAX_METRIC_ROWS = 10_000

_Figure = Annotated[float, Meta(ge=0)]
NodeRow = tuple[_Figure, _Figure, _Figure, _Figure, _Figure, _Figure]
InstanceRow = tuple[str, _Figure, _Figure, _Figure, _Figure, _Figure]


class Metrics(Message, tag="metrics"):
    """One sampling tick of a node: positional rows, not a dict per sample, so that a fleet's
    samples stay cheap to encode, send and parse.

    `node` follows NODE_FIELDS; each row of `instances` is `[instance_id, *INSTANCE_FIELDS]`
    (CPU in percent of one core, summed over the instance's process tree; bytes and bytes/s).
    Each figure covers the `interval` seconds that end at `ts`. Like any message it proves the
    agent alive, and its node row carries the load, so agents skip heartbeats while metrics flow.
    JSON has no NaN or infinity, so none can arrive.
    """

    ts: float
    interval: Annotated[float, Meta(gt=0, le=3600)] = 1.0
    node: NodeRow | None = None
    instances: Annotated[list[InstanceRow], Meta(max_length=MAX_METRIC_ROWS)] = []


class Result(Message, tag="result"):
    reply_to: str
    ok: bool
    error: WireError | None = None
    data: dict[str, Any] = {}


class LogChunk(Message, tag="log_chunk"):
    """Bytes appended to a followed log (text, decoded as UTF-8 with replacement)."""

    instance_id: str
    name: str
    offset: int  # where `data` starts in the file as it is now
    data: str
    reset: bool = False  # the file was rotated or truncated since the last chunk
    error: str | None = None  # following stopped: why (e.g. the file became a symlink)


class Goodbye(Message, tag="goodbye"):
    """The agent is stopping on purpose (a signal, a service manager): its node going offline
    next is planned, not a failure to alert on. A master that does not know it skips it."""

    reason: str = ""


AgentMessage = (
    Hello | Heartbeat | InstanceStateMsg | InstanceStates | Metrics | Result | LogChunk | Goodbye
)
AGENT_MESSAGE = msgspec.json.Decoder(AgentMessage)


# Master -> agent


class PackageRef(Struct):
    id: str
    name: str
    version: str
    sha256: str
    size: int
    url: str  # absolute; the master's download route or a presigned object-store URL
    needs_auth: bool = True  # send the node credential (False for presigned URLs)


class AdoptSpec(Struct):
    """How to find (and optionally start and stop) a process GDOS did not start."""

    strategy: Literal["pid_file", "process_name", "cmdline"]
    pid_file: str | None = None
    process_name: str | None = None
    cmdline_pattern: str | None = None  # a regular expression searched in the joined cmdline
    start_command: str | list[str] | None = None  # a string is split into words; no shell
    stop_command: str | list[str] | None = None  # without it: SIGTERM to the tree, then SIGKILL
    stop_timeout: float = 10.0
    log_paths: dict[str, str] = {}
    health: HealthCheck | None = None
    restart: RestartMode = "no"
    restart_limit: int = 5
    restart_window: float = 60.0
    start_order: int = 0  # its level in a system's batch start (adopted instances have no module)
    user: str | None = None  # who its start, stop and probe commands run as (None: the default)
    group: str | None = None


class InstanceSpec(Struct):
    """Everything the agent needs to run an instance without asking the master again."""

    instance_id: str
    name: str
    package: PackageRef | None = None  # None for an adopted process; the current release's
    env: dict[str, str] = {}  # over the manifest's env
    args: list[str] | None = None  # None: the manifest's args
    adopt: AdoptSpec | None = None
    # A per-instance setting over service.json's `user`/`group` (None: the manifest's, then the
    # agent's --default-user).
    user: str | None = None
    group: str | None = None
    index: int | None = None  # GDOS_INSTANCE_INDEX: 1, 2, ... within its module


class Settings(Struct):
    """What runs an instance, as the master holds it now (the module's env and args with the
    instance's own over them, its index and account). Sent with a start or a switch, it replaces
    the instance's spec from that start on, and the agent keeps it for its own restarts."""

    env: dict[str, str] = {}
    args: list[str] | None = None
    index: int | None = None
    user: str | None = None
    group: str | None = None


class Deploy(Message, tag="deploy"):
    id: str
    spec: InstanceSpec


class Start(Message, tag="start"):
    id: str
    instance_id: str
    settings: Settings | None = None  # None: as it was last started


class Stop(Message, tag="stop"):
    id: str
    instance_id: str


class Destroy(Message, tag="destroy"):
    id: str
    instance_id: str


class Batch(Message, tag="batch"):
    """Start or stop several instances in one message; the result's `data.results` maps each
    instance id to null (done) or its error."""

    id: str
    action: Literal["start", "stop"]
    instance_ids: list[str]
    settings: dict[str, Settings] = {}  # by instance id, for starts (see Start.settings)


class Prepare(Message, tag="prepare"):
    """Fetch, check and unpack a package as a release beside the running one; nothing stops.
    Idempotent: a release already kept is neither fetched nor unpacked again. The result's data
    is {"report", "release", "fetched": bool}."""

    id: str
    instance_id: str
    package: PackageRef


class Switch(Message, tag="switch"):
    """Make a prepared release the current one, under the instance's lock: stop, point
    `current` at it, start. `start`: true starts it, false leaves it stopped, null starts it
    when it was running. Idempotent. The result's data is {"report", "release", "previous"}."""

    id: str
    instance_id: str
    package: PackageRef
    start: bool | None = None
    settings: Settings | None = None


class Adopt(Message, tag="adopt"):
    """Take over a running process; the result's `data.report` is the new instance's state."""

    id: str
    spec: InstanceSpec


class Config(Message, tag="config"):
    node_id: str
    heartbeat_interval: float = 1.0
    metrics_interval: float | None = None  # None: the agent's own --metrics-interval


class ListLogs(Message, tag="list_logs"):
    """Which logs an instance has: stdout, stderr, then its manifest's log_paths."""

    id: str
    instance_id: str


class TailLog(Message, tag="tail_log"):
    """The last `tail_bytes` of one declared log; the reply's data is {"data": base64, ...}."""

    id: str
    instance_id: str
    name: str
    tail_bytes: Annotated[int, Meta(ge=0, le=1 << 20)] = 65536


class FollowLog(Message, tag="follow_log"):
    """Start (follow=True) or stop streaming `log_chunk`s of one declared log."""

    id: str
    instance_id: str
    name: str
    follow: bool = True


MasterMessage = (
    Deploy
    | Start
    | Stop
    | Destroy
    | Batch
    | Prepare
    | Switch
    | Adopt
    | Config
    | ListLogs
    | TailLog
    | FollowLog
)
MASTER_MESSAGE = msgspec.json.Decoder(MasterMessage)

# Decoding errors: a frame that is not JSON at all vs. JSON that is no message we know.
DecodeError = msgspec.DecodeError
ValidationError = msgspec.ValidationError

# WebSocket close codes used on the agent channel and the event stream.
CLOSE_AUTH_FAILED = 4401
CLOSE_REPLACED = 4409  # the same node connected again; the older socket is closed
CLOSE_POLICY = 1008
CLOSE_TOO_SLOW = 1013
