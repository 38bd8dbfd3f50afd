"""The auth-pam plugin's check (`plugin .../openvpn-plugin-auth-pam.so SERVICE [NAME VALUE]...`),
done natively: one more kind of password check for AuthChecker (auth.py), run in its worker
threads, each asking the root helper (host/pam_helper.py) and waiting for its verdict.

Why a helper: the server drops root after its start (`user nobody`), and pam_unix must read
/etc/shadow; OpenVPN's plugin forks its PAM process before the drop for the same reason. The
helper is started once per process, at the server's start (while root), for the plugin line's
service and pairs; a reload keeps it (a reload cannot change the line: gateway/ops.py).

OpenVPN 2.6 runs the plugin synchronously unless `setenv deferred_auth_pam 1`; here the check
is always off the event loop (AuthChecker), so a slow PAM holds no other client either way.
With an auth-user-pass-verify command too, both must accept (BothChecks), as OpenVPN combines a
plugin and a script (ssl_verify.c verify_user_pass).
"""
from __future__ import annotations

from typing import Protocol

from ..host.pam_client import UNANSWERED
from ..host.pam_helper import BUSY, MAX_CHILDREN, OK, REFUSED
from ..host.pam_rules import Creds, plugin_credentials
from ..openvpn.config.model import Options
from ..openvpn.errors import ConfigError
from ..openvpn.keymethod import remap_name
from ..openvpn.peernames import to_bytes
from .authscript import MAX_PENDING, PER_SOURCE_PENDING, PER_SOURCE_RATE, Verdict, remove


class Asker(Protocol):
    def check(self, c: Creds) -> tuple[int, str]: ...


class PamCheck:
    """The callable AuthChecker runs: (username, password, common_name, env) -> Verdict. `env`:
    the client's (untrusted_ip6, else untrusted_ip, becomes PAM_RHOST, as the plugin sets it)."""

    workers = MAX_CHILDREN          # each waits on its check in the helper
    # A command's limits (authscript.py): a PAM stack may ask a directory server or sleep on a
    # failure (pam_unix: 2 s), and an office's users share one address behind NAT.
    max_pending = MAX_PENDING
    per_source_pending = PER_SOURCE_PENDING
    per_source_rate = PER_SOURCE_RATE

    def __init__(self, helper: Asker, service: str, time_limit: float) -> None:
        self.helper = helper
        self.service = service
        self.defer_limit = time_limit

    def __call__(self, username: str, password: str, common_name: str | None,
                 env: dict[str, str] | None = None) -> Verdict:
        env = env or {}
        # OpenVPN's core makes both printable first (verify_user_pass), then the plugin reads them.
        c = plugin_credentials(to_bytes(remap_name(username)), to_bytes(remap_name(password)),
                               to_bytes(common_name or ""), env.get("untrusted_ip6") or env.get("untrusted_ip") or "")
        if c is None:
            return Verdict(False, why="auth-pam: the client sent no username (the plugin refuses it unasked)")
        status, words = self.helper.check(c)
        if status == OK:
            return Verdict(True)
        if status == REFUSED:
            return Verdict(False, why=f"auth-pam: PAM service {self.service!r} refused user "
                                      f"{username[:64]!r}: {words}")
        if status == BUSY or words in UNANSWERED:
            # No verdict on the password: 2.6 runs one check at a time and the others wait (its
            # server blocks), none is refused for it. A final AUTH_FAILED would end a client
            # without auth-retry; AUTH_FAILED,TEMP has a 2.6 client try again after its backoff.
            return Verdict(False, temporary=True, why=f"auth-pam: no verdict for now: {words}")
        return Verdict(False, why=f"auth-pam: the check failed: {words}")


class BothChecks:
    """The plugin's check and an auth-user-pass-verify command's: both must accept. Both run,
    the plugin first, as in OpenVPN 2.6 (a command that logs every attempt still sees each)."""

    def __init__(self, plugin: PamCheck, command) -> None:
        self.plugin, self.command = plugin, command
        self.workers = max(plugin.workers, command.workers)
        self.max_pending = command.max_pending
        self.per_source_pending = command.per_source_pending
        self.per_source_rate = command.per_source_rate
        self.defer_limit = command.defer_limit

    def __call__(self, username: str, password: str, common_name: str | None,
                 env: dict[str, str] | None = None) -> Verdict:
        first = self.plugin(username, password, common_name, env)
        second = self.command(username, password, common_name, env or {})
        if first.ok:
            return second
        if second.control is not None:          # deferred: its verdict no longer counts
            remove(second.control, second.reason_file, second.pending_file)
        return Verdict(False, client_reason="" if second.ok else second.client_reason, why=first.why,
                       temporary=first.temporary)

    def stop(self) -> None:
        self.command.stop()


_helpers: dict[tuple, object] = {}


def pam_check(opts: Options, command=None):
    """The check for `opts`' auth-pam plugin line, combined with `command` (an
    auth-user-pass-verify command's check) if given; `command` alone without the line. The
    helper starts here at the first call for a line (at the server's start, while root)."""
    if opts.auth_pam is None:
        return command
    service, pairs = opts.auth_pam
    key = (service, pairs)
    helper = _helpers.get(key)
    if helper is None:
        from ..host.pam_client import PamHelper
        try:
            helper = PamHelper(service, pairs, float(opts.hand_window))
        except OSError as e:
            path, line = opts.source.get("auth_pam", (opts.path, None))
            raise ConfigError(f"cannot start the PAM helper: {e}", path, line, "plugin") from None
        _helpers[key] = helper
    check = PamCheck(helper, service, float(opts.hand_window))
    return check if command is None else BothChecks(check, command)
