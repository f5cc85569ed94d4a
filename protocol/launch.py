"""What a process can be started with: environment names and values, arguments, and the sizes
exec accepts. service.json, modules, adopted commands and instance settings share these rules,
so that what GDOS accepts can always be started."""

from collections.abc import Iterable, Mapping, Sequence

MAX_STRING_BYTES = 128 * 1024  # Linux MAX_ARG_STRLEN: one argument or NAME=value, NUL included
MAX_TOTAL_BYTES = 1024 * 1024  # all arguments and environment entries of one start together

NO_NUL_PATTERN = "^[^\\x00]*$"
ENV_NAME_PATTERN = "^[^=\\x00]+$"


class LaunchError(ValueError):
    """A value no process can be started with. `where` is the key or index inside the field
    that was checked ("PATH", "2"), or a path from the body ("env.PATH") for the total size."""

    def __init__(self, where: str | None, message: str) -> None:
        super().__init__(message)
        self.where = where


def shown(key: str) -> str:
    """A key as a person can read it in a message (control characters escaped)."""
    return key if key.isprintable() else repr(key)[1:-1]


def _bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass")) + 1  # exec copies the terminating NUL


def _size(n: int) -> str:
    return f"{n:,} bytes"


def check_env(env: Mapping[str, str]) -> None:
    """Names non-empty, without `=` or NUL; values without NUL; each NAME=value within
    MAX_STRING_BYTES."""
    for name, value in env.items():
        if not name:
            raise LaunchError(None, "a variable has an empty name: name it or remove it")
        if "=" in name:
            raise LaunchError(shown(name), "a variable name cannot contain '=': rename it")
        if "\x00" in name:
            raise LaunchError(
                shown(name), "a variable name cannot contain a NUL character: remove it"
            )
        if "\x00" in value:
            raise LaunchError(
                shown(name),
                "the value contains a NUL character, which no process can be given: remove it",
            )
        size = _bytes(name) + _bytes(value)  # NAME, "=", value, NUL
        if size > MAX_STRING_BYTES:
            raise LaunchError(
                shown(name),
                f"NAME=value is {_size(size)}, over the {_size(MAX_STRING_BYTES)} (128 KiB) "
                "one environment entry can have: shorten it",
            )


def check_args(args: Sequence[str]) -> None:
    """No NUL in any argument; each within MAX_STRING_BYTES."""
    for i, arg in enumerate(args):
        if "\x00" in arg:
            raise LaunchError(
                str(i), "contains a NUL character, which no process can be given: remove it"
            )
        size = _bytes(arg)
        if size > MAX_STRING_BYTES:
            raise LaunchError(
                str(i),
                f"is {_size(size)}, over the {_size(MAX_STRING_BYTES)} (128 KiB) one argument "
                "can have: shorten it",
            )


def check_total(env: Mapping[str, str] | None, args: Sequence[str] | None) -> None:
    """Environment and arguments together within MAX_TOTAL_BYTES; the error names the largest
    entry, the first one to shorten."""
    entries: list[tuple[str, int]] = [
        (f"env.{shown(name)}", _bytes(name) + _bytes(value)) for name, value in (env or {}).items()
    ]
    entries += [(f"args.{i}", _bytes(arg)) for i, arg in enumerate(args or ())]
    total = sum(size for _, size in entries)
    if total > MAX_TOTAL_BYTES:
        largest = max(entries, key=lambda e: e[1])[0]
        raise LaunchError(
            largest,
            f"env and args are {_size(total)} in all, over the {_size(MAX_TOTAL_BYTES)} (1 MiB) "
            "a process can be started with: shorten them, starting with this one",
        )


def check_command(words: Iterable[str]) -> None:
    """A command as an argument list: a non-empty program, then arguments."""
    words = list(words)
    if not words or not words[0]:
        raise LaunchError(None, "a command needs a program: give it as the first word")
    check_args(words)
