"""auth-user-pass-verify with a command, as OpenVPN 2.6 runs it (ssl_verify.c,
verify_user_pass_script), in the password checker's worker threads (auth.py), never on the loop.

The command gets OpenVPN's environment (the gateway builds it: ops.Operations.user_pass_env) plus
`script_type=user-pass-verify` and the three deferred-auth files; with `via-file` one more
argument, a file of two lines (username, password) made in tmp-dir and removed when the command
ends; with `via-env`, `username` and, at script-security 3 only, `password` in its environment.
Its exit status decides: 0 accepts; 2 defers the verdict to `auth_control_file`, into which the
command (or what it started) later writes `1` (accept) or `0` (refuse), within hand-window; any
other refuses, with `auth_failed_reason_file`'s text (if the command wrote one) sent to the
client as `AUTH_FAILED,<text>`. A command that runs past its time limit is killed with what it
started and refuses. A deferring command may also write `auth_pending_file` (OpenVPN 2.6's pending
auth, ssl_verify.c key_state_check_auth_pending_file): three lines -- the timeout in seconds, the
method the client must have announced in IV_SSO (webauth, openurl, crtext), and the text sent to
the client as INFO_PRE (`WEB_AUTH::<url>`, `CR_TEXT:...`); the client is told AUTH_PENDING and
that text and the login waits up to the timeout, as for a management client's
client-pending-auth. A method the client did not announce refuses it with OpenVPN's reason.

Why a worker: a directory lookup (LDAP, RADIUS) takes tens of milliseconds to seconds, a push
approval on a phone up to a minute; OpenVPN 2.6 runs the command synchronously and every tunnel
waits meanwhile. Here the loop goes on; AuthChecker bounds the checks per source, per client
certificate and in total.
"""
from __future__ import annotations

import os
import re
import tempfile

from ..frozen_record import FrozenRecord
from ..openvpn.keymethod import remap_name
from ..openvpn.peernames import to_bytes
from ..openvpn.regular_file import AUTH_FILE, read_regular_file
from .scripts import Running, run_limited

WORKERS = 4                 # commands at once (each mostly waits on a directory server or a person)
# AuthChecker's limits for a command. Looser per source than a password file's (2 at once, 10 per
# 10 s): a command's check may take seconds, a deferred one a minute (a push to a phone), and an
# office's users share one address behind NAT; the workers still bound the commands running.
MAX_PENDING = 256
PER_SOURCE_PENDING = 16
PER_SOURCE_RATE = (30, 10.0)
REASON_MAX = 200            # characters of auth_failed_reason_file sent to the client
_UNSAFE = re.compile(r"[^\x20-\x7e]")


class Verdict(FrozenRecord):
    """A check's outcome. `control`: deferred, the auth_control_file to watch (with its
    `reason_file`); `client_reason`: the text after AUTH_FAILED, (the command's own words);
    `why`: the log's reason for a refusal."""
    ok: bool
    client_reason: str = ""
    why: str = ""
    control: str | None = None
    reason_file: str | None = None
    pending: tuple[int, str] | None = None   # deferred with auth_pending_file: (timeout, INFO_PRE text)
    pending_file: str | None = None          # its path (removed once read; named to later commands, as OpenVPN)
    temporary: bool = False                  # refused for now (the checker busy or restarting): AUTH_FAILED,TEMP


def client_reason(path: str | None) -> str:
    """auth_failed_reason_file's first line, as the client may be shown it: printable ASCII only
    (a line break would end the control message and forge another), at most REASON_MAX."""
    if not path:
        return ""
    try:
        text = read_regular_file(path, AUTH_FILE).decode("utf-8", "replace")
    except OSError:
        return ""
    first = text.strip().splitlines()[0] if text.strip() else ""
    return _UNSAFE.sub("_", first)[:REASON_MAX]


# auth_pending_file: what of it is read (OpenVPN reads lines of up to 1024 bytes; three are used).
PENDING_LINE_MAX = 1024
PENDING_TIMEOUT_MAX = 86400


def pending_request(path: str, iv_sso: str) -> tuple[int, str] | str | None:
    """auth_pending_file, as OpenVPN 2.6 reads it: None when the command wrote none; (timeout,
    text) to send; or why the login is refused (a malformed file, a method the client's IV_SSO
    does not list). Control characters in the text become `_`: it goes into a control message."""
    try:
        data = read_regular_file(path, AUTH_FILE)
    except OSError:
        return None
    if not data:
        return None
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()                          # the last line's own newline
    if len(lines) < 3:
        return "the auth pending file is not at least three lines long"
    first, method, extra = (x.rstrip(b"\r")[:PENDING_LINE_MAX] for x in lines[:3])
    m = re.match(rb"\s*[+-]?\d+", first)
    timeout = int(m.group()) if m else 0
    if timeout == 0:
        return "could not parse the auth pending file's timeout"
    method_s = method.decode("ascii", "replace")
    if method_s not in [x for x in iv_sso.split(",") if x]:
        return f"Authentication failed, required pending auth method '{_UNSAFE.sub('_', method_s)[:64]}' not supported"
    return max(1, min(timeout, PENDING_TIMEOUT_MAX)), _UNSAFE.sub("_", extra.decode("utf-8", "replace"))


def control_state(path: str) -> bool | None:
    """auth_control_file's verdict: True for `1`, False for `0`, None while neither is there
    (or the file is gone or is no regular file: still undecided, the deadline ends it)."""
    try:
        first = read_regular_file(path, AUTH_FILE)[:1]
    except OSError:
        return None
    return True if first == b"1" else False if first == b"0" else None


def remove(*paths: str | None) -> None:
    for p in paths:
        if p:
            try:
                os.unlink(p)
            except OSError:
                pass


class ScriptCheck:
    """The callable AuthChecker runs: (username, password, common_name, env) -> Verdict."""

    workers = WORKERS
    max_pending = MAX_PENDING
    per_source_pending = PER_SOURCE_PENDING
    per_source_rate = PER_SOURCE_RATE

    def __init__(self, argv: tuple[str, ...], method: str, password_in_env: bool, tmp_dir: str | None,
                 time_limit: float, blank_ok: bool = False) -> None:
        self.argv = list(argv)
        self.blank_ok = blank_ok          # auth-user-pass-optional: a blank login goes to the command too
        self.via_file = method == "via-file"
        self.password_in_env = password_in_env
        self.tmp_dir = tmp_dir
        self.time_limit = time_limit
        self.defer_limit = time_limit     # how long a deferred verdict is waited for (AuthChecker)
        self.running = Running()

    def _temp(self, kind: str) -> str:
        # OpenVPN's names (platform_create_temp_file): openvpn_<kind>_<random>.tmp, mode 0600.
        fd, path = tempfile.mkstemp(prefix=f"openvpn_{kind}_", suffix=".tmp", dir=self.tmp_dir)
        os.close(fd)
        return path

    def __call__(self, username: str, password: str, common_name: str | None, env: dict[str, str]) -> Verdict:
        if not username and not self.blank_ok:
            # As OpenVPN 2.6 (verify_user_pass): refused before any command runs, unless
            # auth-user-pass-optional hands it to the command (with empty strings).
            return Verdict(False, why="the client sent a blank username")
        made: list[str] = []
        deferred = False
        try:
            acf, apf, afr = self._temp("acf"), self._temp("apf"), self._temp("afr")
            made += [acf, apf, afr]
            full = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **env,
                    "script_type": "user-pass-verify", "auth_control_file": acf, "auth_pending_file": apf,
                    "auth_failed_reason_file": afr}
            # As OpenVPN 2.6 (verify_user_pass): control characters become `_` (the username's
            # already are, keymethod.remap_name; here again for any other caller), so neither can
            # add a line to the file or the environment; the bytes are the client's (to_bytes).
            username, password = remap_name(username), remap_name(password)
            args = list(self.argv)
            if self.via_file:
                up = self._temp("up")
                made.append(up)
                with open(up, "wb") as f:
                    f.write(to_bytes(username) + b"\n" + to_bytes(password) + b"\n")
                args.append(up)
            elif self.password_in_env:
                full["password"] = password
            full["username"] = username      # with either method, as OpenVPN (set_verify_user_pass_env)
            status, why = self._run(args, full)
            if status == 0:
                return Verdict(True)
            if status == 2:
                pending = pending_request(apf, env.get("IV_SSO", ""))
                if isinstance(pending, str):
                    return Verdict(False, client_reason=pending if pending.startswith("Authentication failed")
                                   else "", why=f"pending auth: {pending}")
                deferred = True
                return Verdict(False, control=acf, reason_file=afr, pending=pending, pending_file=apf)
            return Verdict(False, client_reason=client_reason(afr), why=why)
        except OSError as e:
            return Verdict(False, why=f"cannot run the check: {e.strerror or e}")
        finally:
            # Deferred: the control and reason files stay for the verdict (AuthChecker removes them).
            keep = set(made[0:3:2]) if deferred else set()
            remove(*(p for p in made if p not in keep))

    def _run(self, args: list[str], env: dict[str, str]) -> tuple[int, str]:
        """The exit status (-1: not run, or killed at the limit) and, for a refusal, why. Its
        output goes to our log, as OpenVPN's scripts' does; a deferring command may leave a child
        behind (the one that later writes auth_control_file)."""
        name = os.path.basename(self.argv[0])
        try:
            status = run_limited(args, env, self.time_limit, running=self.running)
        except OSError as e:
            return -1, f"cannot run {self.argv[0]}: {e.strerror or e}"
        if self.running.stopped:
            return -1, f"{name} stopped: the server stops or changed its password check"
        if status is None:
            return -1, f"{name} ran past its {self.time_limit:g} s limit"
        return status, ("" if status in (0, 2) else f"{name} exited with status {status}")

    def stop(self) -> None:
        """End the commands running now and any started later (AuthChecker.close: the server
        stops, or a reload changes the kind of check): their verdict is a refusal nobody reads."""
        self.running.stop()
