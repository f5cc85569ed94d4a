"""Host facts for `hello` and load figures for heartbeats."""

import os
import platform
import socket
from pathlib import Path
from urllib.parse import urlparse

import psutil

from protocol.messages import HostInfo, Load


def outbound_ip(master_url: str) -> str:
    """The local address used to reach the master (no packet is sent: UDP connect only)."""
    parsed = urlparse(master_url)
    host = parsed.hostname or "127.0.0.1"
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((host, parsed.port or 80))
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def mac_for_ip(ip: str) -> str:
    addrs = psutil.net_if_addrs()
    for entries in addrs.values():
        if any(e.address == ip for e in entries):
            for e in entries:
                if e.family == psutil.AF_LINK and e.address and e.address != "00:00:00:00:00:00":
                    return e.address
    for entries in addrs.values():  # loopback master: report the first real interface
        for e in entries:
            if e.family == psutil.AF_LINK and e.address and e.address != "00:00:00:00:00:00":
                return e.address
    return ""


def os_name() -> str:
    return platform.system().lower()


def host_info(master_url: str, work_dir: Path) -> HostInfo:
    ip = outbound_ip(master_url)
    disk = psutil.disk_usage(str(work_dir))
    return HostInfo(
        hostname=socket.gethostname(),
        ip=ip,
        os=os_name(),
        arch=platform.machine().lower(),
        mac=mac_for_ip(ip),
        cpu_count=os.cpu_count() or 1,
        mem_total=psutil.virtual_memory().total,
        disk_total=disk.total,
        disk_free=disk.free,
        platform=platform.platform(),
    )


def current_load(work_dir: Path) -> Load:
    try:
        load1 = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        load1 = 0.0
    return Load(
        cpu_percent=psutil.cpu_percent(interval=None),
        mem_percent=psutil.virtual_memory().percent,
        disk_percent=psutil.disk_usage(str(work_dir)).percent,
        load1=load1,
    )
