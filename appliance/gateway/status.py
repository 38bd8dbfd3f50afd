"""The client list as OpenVPN 2.6 prints it (multi.c multi_print_status): one code path for the
status file (`status FILE N`, `status-version 1|2|3`) and the management `status [1|2|3]` command.

Formats, as Debian's OpenVPN 2.6 writes them (compared line by line in the lab):
- version 1: `OpenVPN CLIENT LIST`, `Updated,...`, the client rows, `ROUTING TABLE`, its rows,
  `GLOBAL STATS`, `Max bcast/mcast queue length,0`, `END`;
- versions 2 (comma) and 3 (tab): TITLE, TIME, HEADER rows, CLIENT_LIST/ROUTING_TABLE rows,
  GLOBAL_STATS, END.
Byte counters are the data channel's (per client, summed over its keys, renegotiations included).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

from ..atomic_file import replace_file
from ..openvpn.peernames import to_bytes


def vm_rss() -> str:
    """This process's resident set size (VmRSS from /proc/self/status), e.g. `31.2 MB`, for the
    tunnel-up lines. Why: the VM image must fit in 128 MB of RAM, and this shows how much the
    appliance itself takes; read once per tunnel-up, never on a packet path."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmRSS:"):
                    return f"{int(line.split()[1]) / 1024:.1f} MB"
    except (OSError, ValueError, IndexError):
        pass
    return "?"


TITLE = "OpenVPN 2.6.14 vpn-appliance [SSL (OpenSSL)] [EPOLL] [MH/PKTINFO] [AEAD]"


@dataclass
class ClientRow:
    common_name: str
    real: str
    vaddr: str
    vaddr6: str
    bytes_in: int
    bytes_out: int
    since: int
    username: str
    cid: int
    peer_id: int
    cipher: str
    last_ref: int
    routes: list[str] | None = None     # the ROUTING TABLE's addresses (dev tap: its MACs); None: vaddr, vaddr6


def tstr(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def render(rows: list[ClientRow], version: int, now: float) -> list[str]:
    out: list[str] = []
    if version == 1:
        out += ["OpenVPN CLIENT LIST", f"Updated,{tstr(now)}",
                "Common Name,Real Address,Bytes Received,Bytes Sent,Connected Since"]
        for r in rows:
            out.append(f"{r.common_name},{r.real},{r.bytes_in},{r.bytes_out},{tstr(r.since)}")
        out += ["ROUTING TABLE", "Virtual Address,Common Name,Real Address,Last Ref"]
        for r in rows:
            for v in (r.vaddr, r.vaddr6) if r.routes is None else r.routes:
                if v:
                    out.append(f"{v},{r.common_name},{r.real},{tstr(r.last_ref)}")
        out += ["GLOBAL STATS", "Max bcast/mcast queue length,0", "END"]
        return out
    s = "\t" if version == 3 else ","
    out += [f"TITLE{s}{TITLE}", f"TIME{s}{tstr(now)}{s}{int(now)}",
            s.join(["HEADER", "CLIENT_LIST", "Common Name", "Real Address", "Virtual Address",
                    "Virtual IPv6 Address", "Bytes Received", "Bytes Sent", "Connected Since",
                    "Connected Since (time_t)", "Username", "Client ID", "Peer ID", "Data Channel Cipher"])]
    for r in rows:
        out.append(s.join(["CLIENT_LIST", r.common_name, r.real, r.vaddr, r.vaddr6, str(r.bytes_in),
                           str(r.bytes_out), tstr(r.since), str(r.since), r.username, str(r.cid),
                           str(r.peer_id), r.cipher]))
    out.append(s.join(["HEADER", "ROUTING_TABLE", "Virtual Address", "Common Name", "Real Address", "Last Ref",
                       "Last Ref (time_t)"]))
    for r in rows:
        for v in (r.vaddr, r.vaddr6) if r.routes is None else r.routes:
            if v:
                out.append(s.join(["ROUTING_TABLE", v, r.common_name, r.real, tstr(r.last_ref), str(r.last_ref)]))
    out += [f"GLOBAL_STATS{s}Max bcast/mcast queue length{s}0", f"GLOBAL_STATS{s}dco_enabled{s}0", "END"]
    return out


# How a status file is held open across a `user` drop (ops.py, client_status.py). O_NONBLOCK: a
# FIFO there without a reader (an operator's slip) fails at once (ENXIO) instead of hanging the
# start; write_file replaces the path at each write anyway.
STATUS_OPEN = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK


def write_file(path: str, lines: list[str], held_fd: int | None = None) -> None:
    """Replace the file at once (a reader never sees half a list). `held_fd`: the file opened
    before a `user` drop (ops.py); when the directory is not the user's, written in place through
    it, as OpenVPN does with its status file."""
    b = to_bytes("".join(line + "\n" for line in lines))    # names as their bytes, as OpenVPN
    try:
        replace_file(path, b)
    except PermissionError:
        if held_fd is None:
            raise
        os.pwrite(held_fd, b, 0)
        os.ftruncate(held_fd, len(b))


class Traffic:
    """Per-client byte counts summed over its data keys (a key's counters go away with the key:
    what it counted is kept when it is seen gone). Sample often enough (status, bytecount, events)."""

    def __init__(self) -> None:
        self.keys: dict[int, dict[int, tuple]] = {}
        self.base: dict[int, list[int]] = {}

    def sample(self, rec) -> tuple[int, int]:
        s = rec.session
        if s.final_counts is not None:           # released: only the final counts are left
            cur = {k: (None, r, w) for k, r, w in s.final_counts}
        else:
            cur = {id(dk): (dk, dk.bytes_recv, dk.bytes_sent)
                   for dk in list(s.recv_keys) + [s.send_key] if dk is not None}
        known = self.keys.setdefault(id(rec), {})
        base = self.base.setdefault(id(rec), [0, 0])
        for k, (dk, r, w) in list(known.items()):
            if k not in cur:
                # A key gone since the last look: its own counters are final, so count all of
                # it (the last look may have seen less).
                base[0] += dk.bytes_recv if dk is not None else r
                base[1] += dk.bytes_sent if dk is not None else w
                del known[k]
        known.update(cur)
        return base[0] + sum(v[1] for v in known.values()), base[1] + sum(v[2] for v in known.values())

    def forget(self, rec) -> None:
        self.keys.pop(id(rec), None)
        self.base.pop(id(rec), None)


class LinkBytes:
    """Per-client and server-wide link bytes, as OpenVPN 2.6 reports them: every byte of the
    instance's packets both ways, control channel included (c2.link_read_bytes /
    link_write_bytes: status Bytes Received/Sent, >BYTECOUNT_CLI, client-disconnect's
    bytes_received/bytes_sent), and for load-stats the process's totals over every client it
    ever had (link_read_bytes_global / link_write_bytes_global). The sessions count
    (Session.link_read / link_written); a restart's record goes on from the one it replaced
    (`inherit`), as 2.6's instance is the same. Tunnel traffic for `inactive` is Traffic's."""

    def __init__(self) -> None:
        self.base: dict[int, list[int]] = {}     # id(rec) -> what the records it replaced counted
        self.gone = [0, 0]                       # what sessions no longer held counted

    def of(self, rec) -> tuple[int, int]:
        s, b = rec.session, self.base.get(id(rec))
        if b is None:
            return s.link_read, s.link_written
        return b[0] + s.link_read, b[1] + s.link_written

    def inherit(self, heir, rec) -> None:
        """`heir` (a restart of `rec`'s client) goes on counting from `rec`'s total."""
        r, w = self.of(rec)
        b = self.base.setdefault(id(heir), [0, 0])
        b[0] += r
        b[1] += w

    def forget(self, rec) -> None:
        self.gone[0] += rec.session.link_read
        self.gone[1] += rec.session.link_written
        self.base.pop(id(rec), None)

    def totals(self, live, stateless_written: int = 0) -> tuple[int, int]:
        """Server-wide, over the records `live` still held and all that went before, and the
        resets answered before any record existed (`stateless_written`: 2.6 counts those)."""
        r, w = self.gone
        w += stateless_written
        for rec in live:
            r += rec.session.link_read
            w += rec.session.link_written
        return r, w
