"""Imported at start-up by every Python process whose PYTHONPATH holds this folder (the
no-network test puts it there for the service and the monitor, and their children inherit it).

While SHIFTWATCH_NETGUARD_LOG names a file: every attempt to reach a non-loopback address
(socket connect/connect_ex/sendto, or a name lookup other than localhost) is refused and
written to that file with the process and a short stack. Loopback (127.0.0.0/8, ::1) and
Unix sockets pass. Each guarded process adds a line to `<log>.armed`, so the test can tell
the guard was there. uvloop is hidden so uvicorn runs asyncio's loop, whose sockets are the
patched Python ones (uvloop connects and resolves in C, out of this guard's sight).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import sys
import traceback

_LOG = os.environ.get("SHIFTWATCH_NETGUARD_LOG")
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def _is_local(host: object) -> bool:
    if host is None:  # getaddrinfo(None, port): the local wildcard
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    name = str(host).split("%")[0].strip("[]").lower()
    if name in _LOCAL_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _command_line() -> str:
    """The whole command line (`sys.argv` lacks the module of `-m` this early)."""
    try:
        with open("/proc/self/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return " ".join(sys.argv)


def _record(what: str) -> None:
    stack = "".join(traceback.format_stack(limit=10)[:-2])
    with open(_LOG, "a", encoding="utf-8") as log:
        log.write(f"pid {os.getpid()} ({_command_line()[:300]}): {what}\n{stack}\n")


def _guard_address(sock: socket.socket, address: object) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # Unix, netlink: not the network
    host = address[0] if isinstance(address, tuple) else address
    if not _is_local(host):
        _record(f"{sock.family.name} connection to {address!r}")
        raise OSError(errno.ENETUNREACH, f"netguard: outbound connection to {address!r} blocked")


def _arm() -> None:
    connect, connect_ex, sendto = (
        socket.socket.connect,
        socket.socket.connect_ex,
        socket.socket.sendto,
    )
    getaddrinfo = socket.getaddrinfo

    def guarded_connect(self, address):
        _guard_address(self, address)
        return connect(self, address)

    def guarded_connect_ex(self, address):
        _guard_address(self, address)
        return connect_ex(self, address)

    def guarded_sendto(self, data, *args):
        _guard_address(self, args[-1])
        return sendto(self, data, *args)

    def guarded_getaddrinfo(host, *args, **kwargs):
        if not _is_local(host):
            _record(f"name lookup of {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, f"netguard: lookup of {host!r} blocked")
        return getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = guarded_connect
    socket.socket.connect_ex = guarded_connect_ex
    socket.socket.sendto = guarded_sendto
    socket.getaddrinfo = guarded_getaddrinfo
    sys.modules["uvloop"] = None  # `import uvloop` now fails: uvicorn falls back to asyncio
    with open(f"{_LOG}.armed", "a", encoding="utf-8") as armed:
        armed.write(f"{os.getpid()} {_command_line()}\n")


if _LOG:
    _arm()
