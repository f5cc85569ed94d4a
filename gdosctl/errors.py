"""What ends a command, with the exit codes of the contract (docs/gdosctl.md)."""

from typing import IO, Any, Protocol

import click

OK = 0
FAILED = 1  # the operation failed (a refused request, a failed start or rollout)
USAGE = 2  # a usage error, or an ambiguous name (the candidates are listed)
NOT_FOUND = 3
NOT_AUTHORISED = 4  # wrong password, expired token, not allowed for this role
UNREACHABLE = 5  # the master did not answer


class CtlError(click.ClickException):
    """One sentence for the user (`Error: ...` on stderr), and the exit code it ends with."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code
        self.exit_code = code  # type: ignore[misc]  # click reads it per exception

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"Error: {self.message}", err=True, file=file)


class ClientErrorLike(Protocol):
    """What this module reads of console.client.ClientError (so it need not import it)."""

    status: int | None
    message: str

    @property
    def endpoint_missing(self) -> bool: ...


def from_client_error(exc: ClientErrorLike, master: str, had_token: bool = True) -> CtlError:
    """A failed call, as the user should read it: the master's own sentence, or what to do."""
    status = exc.status
    if status is None:
        return CtlError(exc.message, UNREACHABLE)
    if status == 401 and had_token:
        return CtlError(
            f"your session expired or the master refused it; run `gdosctl login {master}`",
            NOT_AUTHORISED,
        )
    if status in (401, 403):
        return CtlError(exc.message, NOT_AUTHORISED)
    if exc.endpoint_missing:
        return CtlError(
            f"this master ({master}) does not offer that yet: upgrade it to a GDOS with the "
            "endpoint this command needs",
            FAILED,
        )
    if status == 404:
        return CtlError(exc.message, NOT_FOUND)
    return CtlError(exc.message, FAILED)
