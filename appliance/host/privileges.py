"""The process settings an OpenVPN config asks for on a host: `user`/`group` (drop root after
start-up, keeping only the capabilities the gateway still uses), `nice`, `mlock`.

Why capabilities are kept: OpenVPN 2.6 drops to `user nobody` with no capabilities at all, so
after a reconnect it cannot apply a different push, and at exit its route deletes fail
("RTNETLINK answers: Operation not permitted": routes left behind, a familiar complaint). Our
client keeps CAP_NET_ADMIN, and nothing else, so routes and addresses follow every re-push and
are removed at exit; our server configures its TUN before the drop and needs no capability
afterwards.

Mechanism (Linux credentials, capabilities(7)): PR_SET_KEEPCAPS so the permitted set survives
setresuid, then capset() narrows permitted/effective to the kept set, with empty inheritable and
ambient sets: child processes (a server's scripts) get no capability, as under OpenVPN. What
needs root later is prepared before the drop by its owner (the TUN opened, resolv.conf and
status files held open, the resolvectl helper started: cli.py).

Credentials are per thread in Linux: glibc's setresuid/setgroups reach every thread, but
capset() and PR_SET_KEEPCAPS only the caller, so any other thread would be left as `user`
without capabilities. The drop therefore refuses to run while another thread exists; callers
drop before starting threads, and threads started later inherit the caller's credentials.

No maintained Python binding is pinned for this (python-prctl is not packaged for Debian 12):
a few libc calls through ctypes.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import grp
import logging
import os
import pwd
from dataclasses import dataclass

log = logging.getLogger("vpn-appliance")

# linux/capability.h
CAP_NET_ADMIN = 12
CAP_IPC_LOCK = 14
CAP_NAMES = {CAP_NET_ADMIN: "CAP_NET_ADMIN", CAP_IPC_LOCK: "CAP_IPC_LOCK"}
_CAP_VERSION_3 = 0x20080522
# linux/prctl.h
_PR_SET_KEEPCAPS = 8
# sys/mman.h
_MCL_CURRENT, _MCL_FUTURE = 1, 2


class PrivilegeError(Exception):
    """A process setting the config asks for could not be applied: the run must not go on."""


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise PrivilegeError(f"{what}: {os.strerror(e)}")


def _prctl(option: int, arg2: int, what: str) -> None:
    _check(_c().prctl(option, ctypes.c_ulong(arg2), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0)), what)


def mask(caps) -> int:
    m = 0
    for c in caps:
        m |= 1 << c
    return m


def cap_names(m: int) -> str:
    return ", ".join(CAP_NAMES.get(c, f"cap {c}") for c in range(64) if m >> c & 1) or "none"


def _capset(permitted: int, effective: int, inheritable: int) -> None:
    hdr = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    for i in (0, 1):
        data[i].permitted = permitted >> (32 * i) & 0xFFFFFFFF
        data[i].effective = effective >> (32 * i) & 0xFFFFFFFF
        data[i].inheritable = inheritable >> (32 * i) & 0xFFFFFFFF
    _check(_c().capset(ctypes.byref(hdr), data), "capset")


# ------------------------------------------------------------------ who to become
@dataclass(frozen=True)
class Identity:
    """`user`/`group` resolved: uid None keeps the user (a lone `group`, as OpenVPN allows)."""
    uid: int | None
    gid: int
    user: str | None
    group: str


def resolve(user: str | None, group: str | None) -> Identity:
    """Names (or numbers) from the config to ids; LookupError says which one is unknown.

    Without `group`, the user's own primary group (OpenVPN would keep gid 0 and root's
    supplementary groups: not what someone who wrote `user nobody` wants)."""
    uid = gid = None
    if user is not None:
        try:
            pw = pwd.getpwnam(user) if not user.isdigit() else pwd.getpwuid(int(user))
        except (KeyError, ValueError, OverflowError):     # a NUL in the name, a number past uid_t
            raise LookupError(f"no such user {user!r} on this host") from None
        uid, gid, user = pw.pw_uid, pw.pw_gid, pw.pw_name
    if group is not None:
        try:
            gr = grp.getgrnam(group) if not group.isdigit() else grp.getgrgid(int(group))
        except (KeyError, ValueError, OverflowError):     # a NUL in the name, a number past gid_t
            raise LookupError(f"no such group {group!r} on this host") from None
        gid, group = gr.gr_gid, gr.gr_name
    if gid is None:
        raise LookupError("neither user nor group given")
    if group is None:
        try:
            group = grp.getgrgid(gid).gr_name
        except KeyError:
            group = str(gid)                 # a primary gid without a group entry
    return Identity(uid, gid, user, group)


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def drop(who: Identity, keep: frozenset[int] = frozenset()) -> int:
    """Become `who` (groups: only its gid, as OpenVPN's setgroups(1, &gid)), keeping the
    capabilities in `keep` (effective and permitted; none inheritable). Returns the effective
    capability mask (-1: the user is unchanged); PrivilegeError if anything fails (the caller
    stops: running on as root is what the config said not to do)."""
    if _threads() != 1:
        raise PrivilegeError("cannot drop privileges with other threads running (capabilities are per thread)")
    try:
        os.setgroups([who.gid])
        os.setresgid(who.gid, who.gid, who.gid)
    except OSError as e:
        raise PrivilegeError(f"setting group {who.group} ({who.gid}): {e.strerror}") from None
    if who.uid is None or who.uid == 0:
        return -1                           # a lone `group` (or `user root`): the capabilities stay
    paths = _library_paths()
    _prctl(_PR_SET_KEEPCAPS, 1, what="keeping capabilities (PR_SET_KEEPCAPS)")
    try:
        os.setresuid(who.uid, who.uid, who.uid)
    except OSError as e:
        raise PrivilegeError(f"setting user {who.user} ({who.uid}): {e.strerror}") from None
    _prctl(_PR_SET_KEEPCAPS, 0, what="PR_SET_KEEPCAPS")
    k = mask(keep)
    _capset(k, k, 0)
    _verify(who, k)
    _check_imports_readable(who, paths)
    return k


def _library_paths() -> list[str]:
    """The import path entries that exist (looked at while still root)."""
    import sys
    return [d for d in sys.path if d and os.path.exists(d)]


def _check_imports_readable(who: Identity, paths: list[str]) -> None:
    """Python imports modules lazily, long after start-up (a reconnect, a reload, an error's
    traceback): a library the new user cannot read would fail then, far from the cause. So the
    drop fails now, naming the directory (a Python installed under /root, 0700, does that)."""
    for d in paths:
        if not os.access(d, os.R_OK | (os.X_OK if os.path.isdir(d) else 0)):
            raise PrivilegeError(f"user {who.user} cannot read Python's library at {d}: modules loaded after "
                                 "start-up would fail; install the appliance where that user can read it, or "
                                 "remove `user`")


def _status() -> dict[str, str]:
    with open("/proc/self/status", encoding="utf-8", errors="replace") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def _verify(who: Identity, k: int) -> None:
    """Read back what the kernel says: every uid and gid changed, no other capability left."""
    st = _status()
    uids = {int(x) for x in st["Uid"].split()}
    gids = {int(x) for x in st["Gid"].split()}
    caps = int(st["CapEff"], 16), int(st["CapPrm"], 16)
    if uids != {who.uid} or gids != {who.gid} or caps != (k, k):
        raise PrivilegeError(f"privileges not dropped as asked: Uid {st['Uid']}, Gid {st['Gid']}, "
                             f"CapEff {st['CapEff']}, CapPrm {st['CapPrm']}")


# ------------------------------------------------------------------ nice, mlock
def apply_nice(n: int) -> None:
    """`nice N`: as OpenVPN, a failure (raising priority without CAP_SYS_NICE) is a warning."""
    if n == 0:
        return
    try:
        os.nice(n)
        log.info("nice %d applied", n)
    except OSError as e:
        log.warning("nice %d failed: %s", n, e.strerror)


def lock_memory() -> None:
    """`mlock`: mlockall(MCL_CURRENT|MCL_FUTURE), so keys and tunnel data never reach swap."""
    if _c().mlockall(_MCL_CURRENT | _MCL_FUTURE) != 0:
        e = ctypes.get_errno()
        why = os.strerror(e)
        if e in (errno.ENOMEM, errno.EPERM, errno.EAGAIN):
            why += " (the memory lock limit, `ulimit -l` / RLIMIT_MEMLOCK, is too low for this process; run as " \
                   "root, raise it, or remove `mlock`)"
        raise PrivilegeError(f"mlock: cannot lock the process memory: {why}")
    log.info("mlock: process memory locked (never swapped)")


# ------------------------------------------------------------------ what a run asks for
def identity_of(opts) -> Identity | None:
    """The config's `user`/`group` resolved on this host (None: no drop asked); an unknown name
    is a ConfigError at its line, so `check` and `run` stop before anything starts."""
    if opts.user is None and opts.group is None:
        return None
    from ..openvpn.errors import ConfigError
    try:
        return resolve(opts.user, opts.group)
    except LookupError as e:
        d = "user" if opts.user is not None and "user" in str(e) else "group"
        path, line = opts.source.get(d, (opts.path, None))
        raise ConfigError(str(e), path, line, d) from None


def kept_capabilities(role: str, mlock: bool) -> frozenset[int]:
    """The capabilities kept after the drop; the one place that decides it.

    - client: CAP_NET_ADMIN: every push (a reconnect may bring other routes or addresses) is
      applied, and removed at exit, on the TUN device opened before the drop;
    - server: none: its TUN is opened and configured, its port and management socket bound,
      before the drop, and nothing it does later needs a capability (client routes live in
      our own table, not the kernel's);
    - `mlock`: CAP_IPC_LOCK, or every allocation after the drop would count against
      RLIMIT_MEMLOCK (MCL_FUTURE) and fail once it is used up."""
    keep: set[int] = set()
    if role != "server":
        keep.add(CAP_NET_ADMIN)
    if mlock:
        keep.add(CAP_IPC_LOCK)
    return frozenset(keep)


def before_start(opts) -> None:
    """`nice` and `mlock`, applied once the config is known and before the gateway is built."""
    apply_nice(opts.nice)
    if opts.mlock:
        lock_memory()


def drop_for(opts, who: Identity | None) -> None:
    """Drop to `who` with the role's capabilities, and say so in the log."""
    if who is None:
        return
    k = drop(who, kept_capabilities(opts.role, opts.mlock))
    if k < 0:
        log.info("group set to %s (%d); the user is unchanged", who.group, who.gid)
        return
    log.info("privileges dropped: user %s (%d), group %s (%d), capabilities kept: %s", who.user, who.uid,
             who.group, who.gid, cap_names(k))
