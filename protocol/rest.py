"""REST request and response bodies (API.md), one module per resource; FastAPI renders them into
/openapi.json and the console's client parses responses with the same classes.

rest_base: what every body shares · rest_auth: log-in, users, join tokens, enrolment ·
rest_fleet: nodes, packages, uploads · rest_systems: systems, modules, instances, adoption,
operations · rest_records: audit, backups, logs · monitoring: metrics, alerts, silences.
This module gathers the names others import.
"""

from protocol.rest_auth import (
    ROLE_RANK,
    EnrollIn,
    EnrollOut,
    HostIn,
    JoinTokenIn,
    JoinTokenOut,
    LoginIn,
    LoginOut,
    Role,
    UserIn,
    UserOut,
)
from protocol.rest_base import (
    JSON_NUMBER,
    ErrorDetail,
    ErrorOut,
    HealthOut,
    NullMeans,
    PatchBody,
    RequestBody,
    iso,
    parse_iso,
)
from protocol.rest_fleet import LoadOut, MasterOut, NodeOut, NodePatch, PackageOut, UploadOut
from protocol.rest_records import AuditOut
from protocol.rest_systems import (
    HEALTH_SCHEMA,
    AdoptIn,
    BatchIn,
    InstanceCreate,
    InstanceOut,
    ModuleIn,
    ModuleOut,
    ModulePatch,
    OperationOut,
    OperationStarted,
    StartOrder,
    StepOut,
    SystemDetail,
    SystemIn,
    SystemOut,
    SystemPatch,
)

__all__ = [
    "HEALTH_SCHEMA",
    "JSON_NUMBER",
    "ROLE_RANK",
    "AdoptIn",
    "AuditOut",
    "BatchIn",
    "EnrollIn",
    "EnrollOut",
    "ErrorDetail",
    "ErrorOut",
    "HealthOut",
    "HostIn",
    "InstanceCreate",
    "InstanceOut",
    "JoinTokenIn",
    "JoinTokenOut",
    "LoadOut",
    "LoginIn",
    "LoginOut",
    "MasterOut",
    "ModuleIn",
    "ModuleOut",
    "ModulePatch",
    "NodeOut",
    "NodePatch",
    "NullMeans",
    "OperationOut",
    "OperationStarted",
    "PackageOut",
    "PatchBody",
    "RequestBody",
    "Role",
    "StartOrder",
    "StepOut",
    "SystemDetail",
    "SystemIn",
    "SystemOut",
    "SystemPatch",
    "UploadOut",
    "UserIn",
    "UserOut",
    "iso",
    "parse_iso",
]
