"""The files a server config names beside itself (password file, client-config-dir), read into
the dispatcher's settings: one place for the start and for a reload."""
from __future__ import annotations

import os
import stat
import threading
from collections import deque

from ..openvpn.config import Options, parse_ccd
from ..openvpn.errors import CcdPending, ConfigError
from ..openvpn.peernames import file_text, from_peer
from ..openvpn.regular_file import CCD, PASSWORD_DB, read_regular_file
from ..openvpn.server import ServerSettings
from ..openvpn.settings import server_settings
from ..openvpn.tls import TlsSettings
from .authscript import ScriptCheck
from .offloop import OffLoopWorkers


# A ccd file up to this size is read and parsed on the loop when its client connects (~4 ms at
# most: the common file of a few lines costs nothing to hand over); a larger one, up to the 1 MiB
# a ccd file may hold (~0.25 s of `push` lines), in a worker (CcdReader), the client waiting.
INLINE_MAX = 16 * 1024


def ccd_loader(directory: str) -> "CcdFiles":
    """Common name -> parsed ccd file (or None): see CcdFiles."""
    return CcdFiles(directory)


def _read_parsed(path: str):
    """The file at `path` read (as OpenVPN reads it: its bytes) and parsed: its CcdOptions, or
    ConfigError (cannot be read, does not parse). FileNotFoundError for a file that is not there."""
    try:
        text = file_text(read_regular_file(path, CCD))
    except FileNotFoundError:
        raise
    except OSError as e:
        raise ConfigError(f"cannot read it: {getattr(e, 'strerror', None) or e}", path) from None
    return parse_ccd(text, path)


class CcdFiles:
    """Common name -> parsed ccd file (or None); names that could leave the directory get None.
    A file that is there but cannot be read (a directory, a pipe or device -- read on the event
    loop, a FIFO would have blocked it for good --, no permission) is a
    ConfigError naming it, like one that does not parse: the dispatcher refuses that client
    (clientpush.py) rather than admit it without the options its file holds.

    A file counts only under its exact name, as on the Linux file systems OpenVPN runs on: the
    VM reads client-config-dir from its FAT config volume, whose lookups ignore case, so client
    `alice` (with no file of her own) opened `Alice`'s -- its iroutes, its address, and a pass
    through ccd-exclusive. The names are checked against the directory's listing, kept until a
    name is missing from it (then listed afresh once): a stale listing costs a listing, never a
    wrong answer.

    `at_connect(cn)` is what a connecting client's push asks: the same answer, but a file over
    INLINE_MAX is read and parsed by `reader` (the gateway's CcdReader, when it set one) while
    the client waits (CcdPending); OpenVPN 2.6 reads the file at every connect, and so do we --
    a finished read answers only the clients waiting on it then."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.reader: CcdReader | None = None
        self._listing: set[str] = set()

    def _exact(self, name: str) -> bool:
        if name in self._listing:
            return True
        try:
            fresh = set(os.listdir(self.directory))
        except OSError:
            return False
        self._listing = fresh
        return name in fresh

    def _path(self, cn: str) -> str | None:
        # The file name as OpenVPN 2.6 makes it (platform_gen_path): a `/` becomes `_`, and only
        # `.` and `..` name no file. Refusing names with `/` or a leading `.` instead left the
        # `disable` an operator wrote in ccd/a_b (or ccd/.x) for the client `a/b` (or `.x`)
        # unread, and that client in.
        name = cn.replace("/", "_")
        if not name or name in (".", "..") or "\0" in name:
            return None
        return os.path.join(self.directory, name)

    def __call__(self, cn: str):
        path = self._path(cn)
        if path is None:
            return None
        name = os.path.basename(path)
        try:
            opts = _read_parsed(path)
        except FileNotFoundError:
            return None
        except ConfigError:
            if not self._exact(name):
                return None             # not hers (a case-blind file system), or gone meanwhile
            raise
        if not self._exact(name):
            return None                 # another name's file (a case-blind file system): not hers
        return opts

    def at_connect(self, cn: str):
        reader = self.reader
        path = self._path(cn)
        if reader is None or path is None:
            return self(cn)
        try:
            st = os.stat(path)          # never blocks on a FIFO (open would)
        except OSError:
            return self(cn)
        if not stat.S_ISREG(st.st_mode) or st.st_size <= INLINE_MAX:
            return self(cn)
        if not self._exact(os.path.basename(path)):
            return None                 # another name's file (a case-blind file system): not hers
        done = reader.ready.get(path)
        if done is None:
            reader.read(path)           # raises CcdPending (or reads it now: too many waiting)
            done = reader.ready[path]
        if isinstance(done, ConfigError):
            raise done
        return done


class CcdReader(OffLoopWorkers):
    """Reads and parses large ccd files in a worker thread (~0.25 s for 1 MiB of `push` lines:
    on the loop every client's packets waited). `read(path)` starts one (one at a time per path:
    the clients connecting meanwhile wait on the same read) and raises CcdPending(path); the
    gateway's after-wake takes `take_finished()`, has the dispatcher resume the waiting clients
    (they find the answer in `ready`), then `forget()`s those answers: the next connect reads
    the file again, as OpenVPN's. `inline`: read at once, in the caller (tests)."""

    MAX_PENDING = 64        # reads queued at once; past that, on the loop (the old cost, never a refusal)

    def __init__(self, inline: bool = False) -> None:
        super().__init__(inline, 1, "ccd")
        self.ready: dict[str, object] = {}      # path -> CcdOptions, None (gone) or ConfigError
        self._pending: set[str] = set()
        self._stale: set[str] = set()           # pending reads begun before the last reload
        self._rerun: set[str] = set()           # ... which a client asked for since: read again
        self._finished: deque = deque()
        self._lock = threading.Lock()

    def reloaded(self) -> None:
        """A reload: the reads under way began before it, maybe before the operator's edit. A
        client asking for one of those files from now on (a client the reload told RESTART,
        reconnecting) must not be given that read's answer (it came back with the old file's
        address when its reconnect joined the read: review44b's test under load); the file is
        read again for it, and the clients waiting meanwhile get the new answer too."""
        self._stale |= self._pending

    def read(self, path: str) -> None:
        if path in self._pending:
            if path in self._stale:
                self._rerun.add(path)
            raise CcdPending(path)
        if self._pool is None or len(self._pending) >= self.MAX_PENDING:
            self.ready[path] = answer = self._job(path)
            with self._lock:
                self._finished.append((path, answer))      # forgotten at the after-wake, as any
            return
        self._pending.add(path)
        fut = self._pool.submit(self._job, path)
        fut.add_done_callback(lambda f, p=path: self._done(p, f))
        raise CcdPending(path)

    @staticmethod
    def _job(path: str):
        try:
            return _read_parsed(path)
        except FileNotFoundError:
            return None
        except ConfigError as e:
            return e
        except Exception as e:  # noqa: BLE001 - our bug in a worker: that client is refused, saying so
            return ConfigError(f"cannot read it: {type(e).__name__}", path)

    def _done(self, path: str, fut) -> None:
        if fut.cancelled():
            return
        with self._lock:
            self._finished.append((path, fut.result()))
        self._ring()

    def take_finished(self) -> set[str]:
        """The paths read since the last call, their answers put in `ready`."""
        with self._lock:
            got = list(self._finished)
            self._finished.clear()
        done = set()
        for path, answer in got:
            self._pending.discard(path)
            self._stale.discard(path)
            if path in self._rerun:             # asked for since a reload: read it again
                self._rerun.discard(path)
                try:
                    fut = self._pool.submit(self._job, path)
                except RuntimeError:            # shut down (the server stopping): take what is here
                    pass
                else:
                    self._pending.add(path)
                    fut.add_done_callback(lambda f, p=path: self._done(p, f))
                    continue
            self.ready[path] = answer
            done.add(path)
        return done

    def forget(self, paths) -> None:
        for p in paths:
            self.ready.pop(p, None)

    @property
    def waiting(self) -> int:
        return len(self._pending)

    def close(self) -> None:
        self._shutdown()


def load_server_settings(opts: Options, tls: TlsSettings | None = None) -> ServerSettings:
    """server_settings with the password file read and the ccd directory attached; password
    checks deferred to the gateway's worker (never in the event loop). `tls`: what
    check_key_material returned for `opts` (its CRL read once)."""
    passdb = None
    if opts.auth_user_pass_verify:
        passdb = from_peer(read_regular_file(opts.auth_user_pass_verify[0], PASSWORD_DB))   # Latin-1 names too
    ccd = ccd_loader(opts.client_config_dir) if opts.client_config_dir else None
    return server_settings(opts, ccd, passdb, defer_auth=True, tls=tls, check_command=password_check(opts))


def password_check(opts: Options):
    """The check a client's password goes through besides a password file: the
    auth-user-pass-verify command's, the auth-pam plugin's (both: BothChecks), or None. The PAM
    modules (its helper's client, ctypes) are loaded only for a plugin line: a server's start
    without one does not pay for them."""
    check = script_check(opts)
    if opts.auth_pam is None:
        return check
    from .pam_check import pam_check
    return pam_check(opts, check)


def script_check(opts: Options) -> ScriptCheck | None:
    """auth-user-pass-verify's command as a check, or None. Its time limit and a deferred
    verdict's: hand-window (the client's key negotiation is over by then anyway)."""
    if not opts.auth_user_pass_verify_script:
        return None
    argv, method = opts.auth_user_pass_verify_script
    return ScriptCheck(argv, method, opts.script_security >= 3, opts.tmp_dir, float(opts.hand_window),
                       blank_ok=opts.auth_user_pass_optional)
