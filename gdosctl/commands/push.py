"""push: upload a package over tus; run again after an interruption and it resumes."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gdosctl import output
from gdosctl.session import Options, pass_options, run

if TYPE_CHECKING:
    from console.client import Client

FINGERPRINT_KEY = "gdosctl-fingerprint"
SAMPLE = 1 << 20


def fingerprint(path: Path) -> str:
    """Which file an unfinished upload is of, cheaply: its size, mtime, and first and last MiB."""
    st = path.stat()
    h = hashlib.sha256(f"{path.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    with open(path, "rb") as f:
        h.update(f.read(SAMPLE))
        if st.st_size > SAMPLE:
            f.seek(max(SAMPLE, st.st_size - SAMPLE))
            h.update(f.read(SAMPLE))
    return h.hexdigest()[:32]


class Shown:
    """Upload progress: a bar on a terminal; elsewhere a line every tenth (and the first)."""

    def __init__(self, name: str, total: int) -> None:
        self.total = total
        self.last_tenth = -1
        self.bar: Any = None
        self.task: Any = None
        if output.progress_on_terminal():
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.bar = Progress(
                "[bold]{task.description}",
                BarColumn(),
                DownloadColumn(binary_units=True),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=output.console(stderr=True),
            )
            self.task = self.bar.add_task(name, total=total)
            self.bar.start()

    def __call__(self, sent: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=sent)
            return
        tenth = sent * 10 // max(total, 1)
        if tenth != self.last_tenth:
            self.last_tenth = tenth
            share = sent * 100 // max(total, 1)
            click.echo(f"uploaded {output.size(sent)} of {output.size(total)} ({share}%)", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--one-shot", is_flag=True, help="One streamed POST instead of a resumable upload.")
@output.output_option
@pass_options
def push(opts: Options, file: Path, one_shot: bool, fmt: str) -> None:
    """Upload a package (.zip with service.json at its root). Resumable: when it is cut (network,
    Ctrl-C), run the same command again and it goes on from where the master got to.

    \b
    Examples:
      gdosctl push build/payment-service-1.0.2.zip
      gdosctl push app.zip -o json | jq -r .version
    """

    async def go(client: Client) -> dict[str, Any]:
        size = file.stat().st_size
        shown = Shown(file.name, size)
        try:
            if one_shot or not await client.tus_available():
                pkg = await client.upload_package(file, shown)
            else:
                mark = fingerprint(file)
                resume = None
                for upload in await client.uploads():
                    meta = upload.metadata
                    if (
                        upload.state == "receiving"
                        and meta.get(FINGERPRINT_KEY) == mark
                        and upload.length == size
                    ):
                        resume = upload.location
                        click.echo(
                            f"resuming the upload at {output.size(upload.offset)} of {output.size(size)}",
                            err=True,
                        )
                        break
                pkg = await client.tus_upload(
                    file, shown, resume_url=resume, metadata={FINGERPRINT_KEY: mark}
                )
        finally:
            shown.close()
        return pkg.model_dump()

    pkg = run(opts, go)
    if fmt != "table":
        output.dump(pkg, fmt)
        return
    click.echo(
        f"pushed {pkg['name']} {pkg['version']} ({output.size(pkg['size'])}, id {pkg['id']})"
    )
