"""A virtual X display for tests of a real GUI program, and what they look at on it: the titles
of its windows (xwininfo) and the colours of a screenshot (xwd), so a test can tell a painted
window from an empty screen. `scripts/system-deps.sh screenshots` installs the tools."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

TOOLS = ("Xvfb", "xwininfo", "xwd")


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


@contextmanager
def xvfb(width: int = 1280, height: int = 800) -> Iterator[str]:
    """A fresh Xvfb on a free display number; yields its DISPLAY value (":N")."""
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [
            "Xvfb",
            "-displayfd",
            str(write_end),
            "-screen",
            "0",
            f"{width}x{height}x24",
            "-nolisten",
            "tcp",
            "-noreset",
        ],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    try:
        with os.fdopen(read_end) as numbers:
            number = numbers.readline().strip()  # written once the server accepts clients
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(10)


def window_titles(display: str) -> list[str]:
    """The names of every window on the display (`xwininfo -root -tree`)."""
    out = subprocess.run(
        ["xwininfo", "-root", "-tree"],
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    return [line.split('"')[1] for line in out.splitlines() if line.count('"') >= 2]


def screenshot_colours(display: str, step: int = 2) -> int:
    """Distinct colours in a screenshot of the whole screen (every `step`-th pixel each way)."""
    data = subprocess.run(
        ["xwd", "-root", "-silent"],
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        timeout=30,
        check=True,
    ).stdout
    # XWD: a header of 25 big-endian 32-bit fields (then the window name), a colour map of
    # 12-byte entries, then the pixels, `bytes_per_line` per row.
    fields = struct.unpack(">25I", data[:100])
    header_size, width, height = fields[0], fields[4], fields[5]
    bits_per_pixel, bytes_per_line, colour_entries = fields[11], fields[12], fields[19]
    size = bits_per_pixel // 8  # 4 (24-bit colour padded) or 3 (packed), as the server chose
    if size not in (3, 4):
        raise ValueError(f"expected 24 or 32 bits per pixel, the screenshot has {bits_per_pixel}")
    pixels = data[header_size + 12 * colour_entries :]
    seen: set[bytes] = set()
    for y in range(0, height, step):
        row = pixels[y * bytes_per_line : y * bytes_per_line + size * width]
        seen.update(row[x : x + size] for x in range(0, len(row), size * step))
    return len(seen)
