"""`resolvectl` for a client that dropped root (`user nobody`): a small helper process started
before the drop, which keeps root and runs only the resolvectl commands host DNS uses.

Why a helper: systemd-resolved takes a link's DNS only from root (its own uid) or through polkit;
its capability check refuses credentials it can only read from /proc (sd_bus_query_sender_privilege
over dbus-daemon), so CAP_NET_ADMIN in our process does not help (tried: "Access denied").

What the helper accepts (one JSON list per line on stdin, one exit status per line on stdout):
`dns|domain|default-route|revert LINK ARGS...`, LINK a TUN device (/sys/class/net/LINK/tun_flags),
servers IP addresses (no `%scope`), domains DNS names (with `~`), default-route yes/no. Anything
else is refused (status 126) without running anything, so a compromised client process can at
most set the DNS of a TUN link. It exits when the client closes the pipe (or dies).

The input is hostile by assumption (the client dropped root so that a compromise stays small):
a line is read at most MAX_LINE bytes at a time (a line without end cannot grow this root
process), and whatever a line holds ends only that line (refused), never the helper. resolvectl
gets the link's ifindex, read from the same sysfs directory as its tun_flags, not the name: the
client holds CAP_NET_ADMIN and could name a TUN `-ieth0` (an option to resolvectl) or `2` (which
resolvectl reads as ifindex 2), or rename links between our check and resolvectl's lookup.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading

log = logging.getLogger("vpn-appliance")

MAX_LINE = 8192
SYS_NET = "/sys/class/net"
REFUSED = 126
_LINK = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
# Labels never start with `-` (resolvectl would read an option: getopt permutes its arguments).
_LABEL = r"[A-Za-z0-9_][A-Za-z0-9_-]{0,62}"
_DOMAIN = re.compile(rf"~?(\.|{_LABEL}(\.{_LABEL})*\.?)")


def tun_ifindex(link: str) -> int | None:
    """The ifindex of `link` if it is a TUN device, else None. Both read through one open
    directory: a rename between the two reads cannot swap in another device."""
    if not _LINK.fullmatch(link) or link in (".", ".."):
        return None
    try:
        fd = os.open(f"{SYS_NET}/{link}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        os.stat("tun_flags", dir_fd=fd)
        ifd = os.open("ifindex", os.O_RDONLY | os.O_CLOEXEC, dir_fd=fd)
        try:
            text = os.read(ifd, 32)
        finally:
            os.close(ifd)
        index = int(text)
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    return index if index > 0 else None


def allowed(argv: list) -> bool:
    """The only command lines the helper runs (resolved.py's `commands` and `revert`)."""
    if len(argv) < 3 or argv[0] != "resolvectl" or not all(isinstance(a, str) for a in argv) or len(argv) > 64:
        return False
    sub, link, args = argv[1], argv[2], argv[3:]
    if tun_ifindex(link) is None:
        return False
    if sub == "dns":
        try:
            # No `%scope` (resolvectl would bind the server to that interface) and no NUL.
            return all("%" not in a and ipaddress.ip_address(a) is not None for a in args)
        except ValueError:
            return False
    if sub == "domain":
        return all(_DOMAIN.fullmatch(a) for a in args)
    if sub == "default-route":
        return args in (["yes"], ["no"])
    return sub == "revert" and not args


def read_line(stream) -> bytes | None:
    """The next line (None at EOF); b"" for one longer than MAX_LINE, which is read to its end
    MAX_LINE bytes at a time and dropped, so memory stays bounded whatever the client writes."""
    line = stream.readline(MAX_LINE + 1)
    if not line:
        return None
    if len(line) <= MAX_LINE:
        return line
    while not line.endswith(b"\n"):
        line = stream.readline(MAX_LINE)
        if not line:
            break
    return b""


def command(line: bytes) -> list[str] | None:
    """The resolvectl command line a request asks for, the link given by its ifindex; None to
    refuse. Never raises: a JSON bomb (RecursionError), bad UTF-8 or anything else is a refusal."""
    try:
        argv = json.loads(line) if line else None
        if not isinstance(argv, list) or not allowed(argv):
            return None
        index = tun_ifindex(argv[2])
        return None if index is None else [argv[0], argv[1], str(index), *argv[3:]]
    except Exception:  # noqa: BLE001 - hostile input ends only its own request
        return None


def main() -> int:
    """The helper: read, check, run, answer; until EOF."""
    from .resolved import TIMEOUT
    # SIGINT at a terminal, or SIGTERM to the whole service, reaches the helper too: it must
    # outlive the client's last command (the revert at exit) and end when the pipe closes.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    while (line := read_line(sys.stdin.buffer)) is not None:
        argv = command(line)
        if argv is None:
            print(REFUSED, flush=True)
            continue
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               timeout=TIMEOUT, check=False)
            if r.returncode:
                sys.stderr.write(r.stderr.decode("utf-8", "replace")[:200])
            print(r.returncode, flush=True)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            print(127, flush=True)
    return 0


class Helper:
    """The client's side: a Runner (resolved.py) that asks the helper. Started while root."""

    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        # -P: `python -m` would put the working directory first on the path, so a json.py left
        # where root started the client (a shared directory) would run as root in the helper.
        self.p = subprocess.Popen([sys.executable, "-P", "-m", "appliance.host.resolvectl_helper"], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.lock = threading.Lock()

    def __call__(self, argv) -> int:
        with self.lock:
            try:
                assert self.p.stdin is not None and self.p.stdout is not None
                self.p.stdin.write(json.dumps(list(argv)).encode() + b"\n")
                self.p.stdin.flush()
                answer = self.p.stdout.readline()
                rc = int(answer) if answer.strip() else 127
            except (OSError, ValueError) as e:
                log.warning("host DNS: the resolvectl helper is gone: %s", e)
                return 127
        if rc:
            log.warning("host DNS: %s: exit %d%s", " ".join(argv), rc,
                        " (refused by the helper)" if rc == REFUSED else "")
        return rc

    def close(self) -> None:
        try:
            if self.p.stdin is not None:
                self.p.stdin.close()
            self.p.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.p.kill()
            self.p.wait(5)


if __name__ == "__main__":
    raise SystemExit(main())
