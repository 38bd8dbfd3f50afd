"""/etc/resolv.conf while the tunnel is up, restored exactly afterwards (update-resolv-conf's job
on hosts without systemd-resolved).

How the original survives anything:
- The file we write carries the original itself (its bytes, or the symlink target, base64 in
  `#@` comment lines under a marker line naming our pid). So a run killed with SIGKILL, or a
  reboot, leaves everything needed for the next start to put it back (`recover()`), with no
  state directory shared between namespaces or instances. Resolvers skip `#` lines (musl skips
  over-long lines too, so the base64 is wrapped at 64 columns).
- We restore only if the file is still ours (the marker): if another tool rewrote it meanwhile,
  its content wins and we say so.
- A symlinked resolv.conf (systemd, NetworkManager, resolvconf) is replaced by a file while the
  tunnel is up and the same symlink is put back.
- A bind-mounted file (containers; `ip netns exec` with /etc/netns/NS/resolv.conf) cannot be
  renamed over (EBUSY): it is written in place. Otherwise a temporary file is renamed over, so a
  reader never sees half a file.
"""
from __future__ import annotations

import base64
import errno
import logging
import os
import stat

from .dns_settings import DnsSettings

log = logging.getLogger("vpn-appliance")

RESOLV_CONF = "/etc/resolv.conf"
MARKER = "# vpn-appliance: pushed DNS; the original follows (#@ lines) and is restored when the tunnel goes"
_ORIG = "#@ "
MAX_ORIGINAL = 1 << 20        # a resolv.conf bigger than this is not ours to keep a copy of


class ResolvConfError(Exception):
    pass


def _mount_points() -> set[str]:
    out: set[str] = set()
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 4:
                    out.add(parts[4].encode().decode("unicode_escape"))
    except OSError:
        pass
    return out


def is_ours(text: str) -> bool:
    return MARKER in text.splitlines()[:3] if text else False


def _encode_original(kind: str, data: bytes, mode: int) -> list[str]:
    b = base64.b64encode(data).decode()
    return [f"{_ORIG}{kind} {mode:o} {len(data)}"] + [_ORIG + b[i:i + 64] for i in range(0, len(b), 64)]


def _decode_original(text: str) -> tuple[str, bytes, int]:
    """(kind "file"|"symlink"|"absent", bytes or link target, mode) from our own file."""
    lines = [ln[len(_ORIG):] for ln in text.splitlines() if ln.startswith(_ORIG)]
    if not lines:
        raise ResolvConfError("marker without the original")
    head = lines[0].split()
    if len(head) != 3 or head[0] not in ("file", "symlink", "absent"):
        raise ResolvConfError("unreadable original header")
    data = base64.b64decode("".join(lines[1:]), validate=True)
    if len(data) != int(head[2]):
        raise ResolvConfError("original truncated")
    return head[0], data, int(head[1], 8)


def _owner_pid(text: str) -> int | None:
    lines = text.splitlines()
    if len(lines) > 1 and "(pid " in lines[1]:
        try:
            return int(lines[1].rsplit("(pid ", 1)[1].rstrip(")"))
        except ValueError:
            return None
    return None


def _is_appliance(pid: int) -> bool:
    """A live process that is a vpn-appliance (a reused pid after SIGKILL is not)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read()
    except OSError:
        return False
    return b"appliance" in cmd        # vpn-appliance, or python -m appliance


class ResolvConf:
    """Writes pushed DNS into a resolv.conf and restores it; `path` is /etc/resolv.conf outside tests."""

    def __init__(self, path: str = RESOLV_CONF, held_fd: int | None = None) -> None:
        self.path = path
        self.applied = False
        # Opened before a `user` drop (resolver.py): every write goes in place through it, and a
        # symlinked file is written through to its target (renaming in /etc needs root).
        self.fd = held_fd

    # ------------------------------------------------------------------ reading what is there
    def _bind_mounted(self) -> bool:
        """The file (or what its symlink names) is a mount point: renaming over it cannot work,
        and replacing a symlink in front of a mount would change the host's /etc, not ours."""
        mounts = _mount_points()
        return self.path in mounts or os.path.realpath(self.path) in mounts

    def _current(self) -> tuple[str, bytes, int]:
        if self.fd is not None:
            data = os.pread(self.fd, MAX_ORIGINAL + 1, 0)
            if len(data) > MAX_ORIGINAL:
                raise ResolvConfError(f"{self.path} is larger than {MAX_ORIGINAL} bytes")
            return "file", data, stat.S_IMODE(os.fstat(self.fd).st_mode)
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return "absent", b"", 0o644
        if stat.S_ISLNK(st.st_mode) and not self._bind_mounted():
            return "symlink", os.readlink(self.path).encode(), 0o777
        with open(self.path, "rb") as f:
            data = f.read(MAX_ORIGINAL + 1)
        if len(data) > MAX_ORIGINAL:
            raise ResolvConfError(f"{self.path} is larger than {MAX_ORIGINAL} bytes")
        return "file", data, stat.S_IMODE(os.stat(self.path).st_mode)

    def _read_text(self) -> str:
        """The content the resolver reads (through a symlink), or '' when there is none."""
        try:
            with open(self.path, "rb") as f:
                return f.read(MAX_ORIGINAL).decode("utf-8", "replace")
        except OSError:
            return ""

    # ------------------------------------------------------------------ writing
    def _write(self, data: bytes, mode: int) -> None:
        """Replace the file's content: rename over it, or in place on a bind mount (EBUSY)."""
        if self.fd is not None:
            os.pwrite(self.fd, data, 0)
            os.ftruncate(self.fd, len(data))
            os.fsync(self.fd)
            return
        if self._bind_mounted():
            self._write_in_place(data)
            return
        real_is_link = os.path.islink(self.path)
        try:
            st: os.stat_result | None = os.lstat(self.path) if not real_is_link else None
        except FileNotFoundError:
            st = None
        tmp = f"{self.path}.vpn-appliance.{os.getpid()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
            try:
                os.write(fd, data)
                os.fchmod(fd, mode)
                if st is not None and (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                    os.fchown(fd, st.st_uid, st.st_gid)       # the file keeps its owner
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, self.path)
        except OSError as e:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if e.errno in (errno.EBUSY, errno.EXDEV, errno.EPERM, errno.EACCES) and not real_is_link:
                self._write_in_place(data)        # a bind mount, or a directory we may not write
                return
            raise

    def _write_in_place(self, data: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _put_back(self, kind: str, data: bytes, mode: int) -> None:
        if kind == "symlink":
            tmp = f"{self.path}.vpn-appliance.{os.getpid()}"
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            os.symlink(data.decode(), tmp)
            os.rename(tmp, self.path)
        elif kind == "absent":
            os.unlink(self.path)
        else:
            self._write(data, mode)

    # ------------------------------------------------------------------ the three operations
    def recover(self) -> bool:
        """At start: a previous run died with our file in place: put its original back (unless
        that run is still alive: then it is another instance's, and left alone)."""
        text = self._read_text()
        if not is_ours(text):
            return False
        owner = _owner_pid(text)
        if owner is not None and owner != os.getpid() and _is_appliance(owner):
            log.warning("host DNS: %s is held by vpn-appliance pid %d, still running; not touched", self.path, owner)
            return False
        kind, data, mode = _decode_original(text)
        self._put_back(kind, data, mode)
        log.warning("host DNS: %s still held the DNS of a run that did not finish; original restored", self.path)
        return True

    def apply(self, dns: DnsSettings, link: str) -> None:
        if self.applied:
            self.restore()
        kind, data, mode = self._current()
        if kind == "file" and is_ours(data.decode("utf-8", "replace")):
            raise ResolvConfError(f"{self.path} already holds another vpn-appliance's DNS")
        original_text = self._read_text()
        options = [ln for ln in original_text.splitlines() if ln.split()[:1] == ["options"]]
        lines = [MARKER, f"# for {link} (pid {os.getpid()})"]
        lines += [f"nameserver {s}" for s in dns.servers]
        domains = dns.search + dns.routing
        if domains:
            lines.append("search " + " ".join(domains))
        lines += options
        lines += _encode_original(kind, data, mode)
        self._write(("\n".join(lines) + "\n").encode(), mode if kind == "file" else 0o644)
        self.applied = True
        if len(dns.servers) > 3:
            log.warning("host DNS: %d servers pushed; the C library uses the first 3", len(dns.servers))
        log.info("host DNS: %s now uses %s%s", self.path, ", ".join(dns.servers) or "no servers",
                 f" (search {' '.join(domains)})" if domains else "")

    def restore(self) -> None:
        if not self.applied:
            return
        self.applied = False
        text = self._read_text()
        if not is_ours(text):
            log.warning("host DNS: %s was changed by someone else while the tunnel was up; left as it is", self.path)
            return
        kind, data, mode = _decode_original(text)
        self._put_back(kind, data, mode)
        log.info("host DNS: %s restored", self.path)
