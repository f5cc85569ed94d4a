"""Request-body types for what a process is started with: `EnvMap`, `ArgList`, `Command`, and
`LaunchSettings` for a body with both env and args. They apply `protocol.launch`'s rules, and
their OpenAPI schema says the same (what JSON Schema can say: byte sizes are in the description).
A refusal names the key: its error context carries `where`, which the API appends to the field."""

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from protocol.launch import (
    ENV_NAME_PATTERN,
    NO_NUL_PATTERN,
    LaunchError,
    check_args,
    check_command,
    check_env,
    check_total,
)

T = TypeVar("T")


def refusal(exc: LaunchError) -> PydanticCustomError:
    # The message goes in through the context: a literal template would read "{...}" in a
    # refused key as a placeholder.
    return PydanticCustomError("launch", "{message}", {"message": str(exc), "where": exc.where})


def _checked(check: Callable[[T], None]) -> Callable[[T], T]:
    def run(value: T) -> T:
        try:
            check(value)
        except LaunchError as exc:
            raise refusal(exc) from None
        return value

    return run


def _command(value: str | list[str]) -> None:
    if isinstance(value, list):
        check_command(value)
        return
    if not value.strip():
        raise LaunchError(None, "a command must not be blank: give a program")
    check_args([value])


# Sizes are in bytes, which JSON Schema cannot count: the descriptions give them.
_ARG: dict[str, Any] = {"type": "string", "pattern": NO_NUL_PATTERN}
_SIZES = "at most 128 KiB each in UTF-8, and env and args at most 1 MiB together"
COMMAND_LIST_SCHEMA: dict[str, Any] = {
    "type": "array",
    "prefixItems": [{**_ARG, "minLength": 1}],
    "items": _ARG,
    "minItems": 1,
}

EnvMap = Annotated[
    dict[str, str],
    AfterValidator(_checked(check_env)),
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": ENV_NAME_PATTERN},
            "additionalProperties": {"type": "string", "pattern": NO_NUL_PATTERN},
            "description": "environment variables: names without '=' or NUL, values without "
            f"NUL; NAME=value {_SIZES}",
        }
    ),
]

ArgList = Annotated[
    list[str],
    AfterValidator(_checked(check_args)),
    WithJsonSchema(
        {
            "type": "array",
            "items": _ARG,
            "description": f"arguments, without NUL; {_SIZES}",
        }
    ),
]

Command = Annotated[
    str | list[str],
    AfterValidator(_checked(_command)),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "pattern": "^[^\\x00]*[^\\x00\\s][^\\x00]*$",
                },
                COMMAND_LIST_SCHEMA,
            ],
            "description": "a string (split into words as a shell would, never run by one) or "
            "an argument list whose first word is the program; without NUL",
        }
    ),
]


class LaunchSettings(BaseModel):
    """A body with `env` and `args` (either may be absent or None): together they must fit in
    what one process can be started with."""

    @model_validator(mode="after")
    def _fits_one_start(self) -> "LaunchSettings":
        try:
            check_total(getattr(self, "env", None), getattr(self, "args", None))
        except LaunchError as exc:
            raise refusal(exc) from None
        return self
