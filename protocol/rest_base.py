"""What every REST body shares: timestamps, strict request bodies, PATCH bodies' null rule, and
the error, health and JSON-number pieces."""

import math
import time
from datetime import datetime
from typing import Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    # time.strftime, not datetime: the cheaper of the two, and this runs for every timestamp
    # of every instance event.
    whole = math.floor(ts)
    micros = round((ts - whole) * 1e6)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(whole))}.{micros:06d}Z"


def parse_iso(text: str) -> float:
    # RFC 3339 also allows a lowercase "t" and "z".
    return datetime.fromisoformat(text.upper().replace("Z", "+00:00")).timestamp()


def _json_number(value: Any) -> Any:
    # JSON Schema's integer admits 58.0 but no number admits `true` or "58".
    if isinstance(value, bool | str):
        raise ValueError("must be a JSON number")
    return value


# Constraints go before this in Annotated[...], or the OpenAPI schema loses them.
JSON_NUMBER = BeforeValidator(_json_number)


class RequestBody(BaseModel):
    """A request body: unknown fields and non-finite numbers (Python's json reads `Infinity` and
    `NaN`, which are not JSON) are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class NullMeans:
    """Marks a PATCH field whose null means something, e.g. `Annotated[str | None,
    NullMeans("the newest version")]`; the schema offers null with that meaning."""

    def __init__(self, meaning: str) -> None:
        self.meaning = meaning


def _null_meaning(field: FieldInfo) -> str | None:
    return next((m.meaning for m in field.metadata if isinstance(m, NullMeans)), None)


class PatchBody(RequestBody):
    """A PATCH body: only the fields given change. A field left out keeps its value; an explicit
    null is refused by name (422) unless the field is marked `NullMeans`, and the schema offers
    null only where it is accepted."""

    @field_validator("*", mode="before")
    @classmethod
    def _null_only_where_it_means_something(cls, value: Any, info: ValidationInfo) -> Any:
        name = info.field_name
        if value is None and name is not None and _null_meaning(cls.model_fields[name]) is None:
            raise PydanticCustomError(
                "null", "cannot be null: leave the field out to keep its current value"
            )
        return value

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler.resolve_ref_schema(handler(core_schema))
        for name, field in cls.model_fields.items():
            prop = schema["properties"][field.alias or name]
            meaning = _null_meaning(field)
            if meaning is not None:
                prop["description"] = f"{prop.get('description', '')}; null: {meaning}".lstrip("; ")
                continue
            options = [o for o in prop.pop("anyOf", []) if o.get("type") != "null"]
            if len(options) == 1:
                prop.update(options[0])
            elif options:
                prop["anyOf"] = options
            if "default" in prop and prop["default"] is None:
                del prop["default"]
        return schema


class ErrorDetail(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorOut(BaseModel):
    error: ErrorDetail


class HealthOut(BaseModel):
    status: str
    version: str
