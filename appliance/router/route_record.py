"""The routes a client added outside its TUN device, on record in a file under /run, so that the
next run of the same profile removes what a run killed without its clean-up (SIGKILL, a crash,
the OOM killer) left behind.

Why: routes through the TUN go with the device when the process dies, but the host route to the
server along the WAN gateway (redirect-gateway), `net_gateway` routes, block-local's gateway
route and block-ipv6's unreachable routes stay. The next run then found the old host route when
it looked up the way to its server (the most specific route wins), took it for the way (EEXIST:
"already there"), and sent its packets to a gateway that may be gone; a host route to a server
the profile no longer names kept that address out of the tunnel for good. OpenVPN 2.6 has the
same gap (route.c add_route: a route that exists is not its own, and is left as it is).

The file is keyed by the profile's real path (two profiles, two records), opened at start
(before a `user` drop, which leaves the client CAP_NET_ADMIN but not root's /run) and rewritten
in place at each change. A record whose run is still alive is left alone. Only what it says is
removed, and only as it says it: each route by destination, gateway and interface, so a route
the admin added by hand is never taken for ours.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import ipaddress
import json
import logging
import os
import stat

from ..tun.rtnl import RTN_UNICAST, RTN_UNREACHABLE, NetlinkError, Rtnl

log = logging.getLogger("vpn-appliance")

RUN_DIR = "/run/vpn-appliance"
# Far above any real record (a bigger file is not ours): a server may push up to 1024 routes
# (keymethod.MAX_PUSHED_OPTIONS), net_gateway ones outside the TUN, at most ~190 bytes each
# here; at 64 KiB a record of ~600 was taken for not ours and its routes stayed for good.
MAX_RECORD = 1024 * 1024


def _start_time(pid: int) -> str | None:
    """/proc/PID/stat's start time: a PID alone may since belong to another process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _spec(raw) -> dict | None:
    """One recorded route, checked field by field (None if anything is off): the file is ours,
    but what it holds decides which routes we delete."""
    if not isinstance(raw, dict):
        return None
    try:
        dst = ipaddress.ip_address(raw["dst"])
        plen, oif, gw, prio, rtype = raw["prefixlen"], raw["oif"], raw["gateway"], raw["priority"], raw["rtype"]
        if not isinstance(plen, int) or not 0 <= plen <= dst.max_prefixlen:
            return None
        if oif is not None and not isinstance(oif, int) or prio is not None and not isinstance(prio, int):
            return None
        if gw is not None:
            ipaddress.ip_address(gw)
        if rtype not in (RTN_UNICAST, RTN_UNREACHABLE):
            return None
    except (KeyError, TypeError, ValueError):
        return None
    return {"dst": str(dst), "prefixlen": plen, "oif": oif, "gateway": gw, "priority": prio, "rtype": rtype}


def _describe(spec: dict) -> str:
    via = f" via {spec['gateway']}" if spec["gateway"] else ""
    kind = " (unreachable)" if spec["rtype"] == RTN_UNREACHABLE else ""
    return f"{spec['dst']}/{spec['prefixlen']}{via}{kind}"


class RouteRecord:
    def __init__(self, profile_path: str, run_dir: str = RUN_DIR) -> None:
        key = hashlib.sha256(os.path.realpath(profile_path).encode()).hexdigest()[:16]
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, f"client-routes-{key}.json")
        self.fd: int | None = None
        self.taken = False
        self._written = b""             # what the file holds now (emptied when taken over)

    def take_over(self) -> None:
        """At start, before any route lookup: remove the routes a dead run of this profile left,
        then hold the record open for ours. Any failure is logged and the run goes on."""
        if self.taken:
            return
        self.taken = True
        try:
            os.makedirs(self.run_dir, 0o755, exist_ok=True)
            st = os.lstat(self.run_dir)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
                raise OSError(errno.EPERM, "not a directory of ours that only we can write")
            fd = self._open_locked()
        except OSError as e:
            log.warning("route record %s: %s; routes a killed run left are not removed", self.path, e)
            return
        if fd is None:
            log.warning("route record %s: another run of this profile holds it; its routes are left alone, "
                        "ours are not on record", self.path)
            return
        try:
            raw = os.pread(fd, MAX_RECORD + 1, 0)
            if raw and not self._remove_stale(raw):
                os.close(fd)                     # a live run of this profile owns it
                return
            os.ftruncate(fd, 0)
        except OSError as e:
            log.warning("route record %s: %s", self.path, e)
            os.close(fd)
            return
        self.fd = fd

    def _open_locked(self) -> int | None:
        """The record, open and locked (flock, held until we close it or die, whatever kills
        us); None if another live run holds it. Why a lock and not only the PID in the record: a
        run with no route outside its TUN yet keeps its record empty, and a second run of the
        profile then took the same file, so each one's writes emptied or replaced the other's
        (and a clean exit of one unlinked the other's record). Locked, the file must still be the
        one at the path: a run that unlinked it at its exit leaves an inode nobody reads."""
        for _ in range(3):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            except OSError:
                os.close(fd)
                raise
            try:
                same = os.path.samestat(os.fstat(fd), os.lstat(self.path))
            except FileNotFoundError:
                same = False
            except OSError:
                os.close(fd)
                raise
            if same:
                return fd
            os.close(fd)
        raise OSError(errno.EAGAIN, "the record was replaced while it was being opened")

    def _remove_stale(self, raw: bytes) -> bool:
        """Remove what a dead run recorded; False (nothing touched) if that run is alive."""
        try:
            rec = json.loads(raw) if len(raw) <= MAX_RECORD else None
        except ValueError:
            rec = None
        if not isinstance(rec, dict) or not isinstance(rec.get("routes"), list):
            log.warning("route record %s: not a record of ours; ignored", self.path)
            return True
        pid = rec.get("pid")
        start = rec.get("start")
        if isinstance(pid, int) and pid != os.getpid() and start is not None and _start_time(pid) == start:
            log.warning("route record %s: run %d of this profile is still running; its routes are left alone",
                        self.path, pid)
            return False
        with Rtnl() as nl:
            for spec in filter(None, map(_spec, rec["routes"])):
                try:
                    nl.route_del(**spec)
                except NetlinkError as e:
                    log.debug("stale route %s already gone: %s", _describe(spec), e)
                    continue
                log.warning("removed route %s that a run of this profile (pid %s) left when it was killed",
                            _describe(spec), pid)
        return True

    def write(self, specs: list[dict]) -> None:
        """Our routes outside the TUN now (none: an empty record)."""
        if self.fd is None:
            return
        data = json.dumps({"pid": os.getpid(), "start": _start_time(os.getpid()), "routes": specs}).encode() if specs else b""
        if data == self._written:
            return                      # nothing changed: no system calls (a push is on the way to the first packet)
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)
            self._written = data
        except OSError as e:
            log.warning("route record %s: %s", self.path, e)

    def close(self) -> None:
        """After a clean removal of our routes: the record goes (emptied if a `user` drop leaves
        us unable to unlink it)."""
        if self.fd is None:
            return
        self.write([])
        try:
            os.unlink(self.path)            # while locked: a run starting now makes a new one
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None
