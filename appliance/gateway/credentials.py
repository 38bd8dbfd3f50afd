"""The client's username and password for each key-method message: kept for the run, or, with
`auth-nocache`, fetched again at each use and kept by no one in between; and what is asked before
the start (ask_credentials: the profile's, or the terminal's, with a static challenge's response).

What OpenVPN 2.6 does, and so what a profile with auth-nocache expects: right after writing the
credentials into the key-method message it purges them (ssl.c key_method_2_write:
purge_user_pass), and the next message that needs them (a reconnect, a renegotiation without an
auth-token) gets them afresh: `auth-user-pass FILE` reads the file again, so a password rotated
in the file, or a one-time code a helper writes there, is what the next connection sends; a
prompted password is asked again on the terminal. An inline <auth-user-pass> block is the
config's own text and reads the same every time. A pushed auth-token stands in for the password
either way (the engine asks for credentials only when no token does: roles.py).

A file that cannot be read or no longer holds a username ends the run with status 1, as OpenVPN
2.6's fatal "Error opening 'Auth' status file" does: a local problem, not a network fault that a
reconnect would cure. With `user`/`group` the file is read after the privileges are dropped, so it
must be readable by that user (the same as OpenVPN 2.6); the first connection shows it at once.

Python cannot wipe a str, so "kept by no one" means no reference kept here or in the session's
config: the bytes last until the allocator reuses them, which is less than OpenVPN's memset but the
same promise as to what the process holds on to between connections.
"""
from __future__ import annotations

import base64
import getpass
import logging
import os
import sys
from typing import Callable

from ..openvpn.config import Options
from ..openvpn.config.d_security import user_pass_file
from ..openvpn.errors import ConfigError
from ..openvpn.keymethod import USER_PASS_LEN
from ..openvpn.peernames import from_peer, to_bytes
from ..openvpn.regular_file import KEY_MATERIAL, read_regular_file

log = logging.getLogger(__name__)

Fetch = Callable[[], tuple[str, str]]


class CredentialsUnavailable(Exception):
    """The credentials could not be had when a key-method message needed them: the run ends."""


class Credentials:
    """A callable for SessionConfig.credentials: the first value once (what was asked before the
    start), then `fetch()` at each later use; nothing kept after a value is handed out."""

    def __init__(self, first: tuple[str, str] | None, fetch: Fetch) -> None:
        self._first = first
        self._fetch = fetch
        self.fetches = 0                      # how often fetch() ran (tests, the log)

    def __call__(self) -> tuple[str, str]:
        v, self._first = self._first, None
        if v is not None:
            return v
        self.fetches += 1
        return self._fetch()


def read_file(path: str) -> tuple[str, str]:
    """auth-user-pass FILE, read now; CredentialsUnavailable naming the file otherwise."""
    try:
        data = read_regular_file(path, KEY_MATERIAL)
    except OSError as e:
        raise CredentialsUnavailable(f"auth-nocache: cannot read the auth-user-pass file {path}: "
                                     f"{e.strerror or e}") from None
    try:
        return user_pass_file(data)
    except ValueError as e:
        raise CredentialsUnavailable(f"auth-nocache: the auth-user-pass file {path}: {e}") from None


def ask_terminal() -> tuple[str, str]:
    """A prompted username/password, asked again (auth-nocache without a file); blocks, as OpenVPN's
    console query does: the connection waits for the answer. On the terminal itself, not stdout:
    with `log FILE` stdout is the log file (host/process_files.py)."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            os.write(fd, b"Username: ")
            line = b""
            while not line.endswith(b"\n") and len(line) < USER_PASS_LEN:   # a line, as the terminal gives it
                b = os.read(fd, USER_PASS_LEN - len(line))
                if not b:
                    raise EOFError
                line += b
        finally:
            os.close(fd)
        return from_peer(line.rstrip(b"\r\n")), getpass.getpass("Password: ")
    except (EOFError, OSError) as e:
        raise CredentialsUnavailable(f"auth-nocache: cannot ask for the username and password again: "
                                     f"{type(e).__name__}") from None


def for_run(opts: Options, user: str, password: str) -> Credentials | None:
    """What the client's sessions take their credentials from with auth-nocache (None: the fields
    given, kept for the run). `user`/`password`: asked before the start (cli.py), if they were."""
    if not (opts.auth_nocache and opts.auth_user_pass_required):
        return None
    if opts.auth_user_pass_file:
        path = opts.auth_user_pass_file
        return Credentials(None, lambda: read_file(path))
    if opts.auth_user_pass is not None:          # inline: the config's text, the same each time
        inline = opts.auth_user_pass
        return Credentials(None, lambda: inline)
    return Credentials((user, password), ask_terminal)


# ---------------------------------------------------------------- before the start
# Asked here, beside what the sessions fetch later, and not in run_toml.py (the TOML run's
# module, which loads the netlink library pyroute2, the router and the TOML schema): `run
# profile.ovpn` with auth-user-pass imported all of that before its first packet and before its
# management socket (~0.13 s of CPU, a third more than the rest of its imports; under CI's load
# that is seconds: tests/unit/test_client_imports.py).

def ask_credentials(opts: Options) -> tuple[str, str]:
    """Username and password from the profile, or asked on the terminal; a ConfigError naming the
    auth-user-pass line when there is neither (an unattended run). With `static-challenge` (and
    no management client to ask) the response is asked on the terminal too and the password sent
    as OpenVPN 2.6 packs it (misc.c get_user_pass_cr), even when the profile holds the password."""
    if opts.management_query_passwords and opts.auth_user_pass_required and \
            not (opts.auth_user_pass and opts.auth_user_pass[1]):
        return "", ""           # asked of the management client (ClientGateway._ask_passwords)
    if opts.auth_user_pass:
        user, pw = opts.auth_user_pass
        if not pw:
            # A file (or block) with the username alone: 2.6 asks for the password on its console
            # (misc.c get_user_pass_cr) and, with none, ends at start. Ours sent an empty password
            # to the server, again at every retry, and ended in AUTH_FAILED instead.
            _need_terminal(opts, "auth_user_pass", "auth-user-pass", "the password (the file holds the "
                           "username alone; put the password on its second line)")
            pw = getpass.getpass("Password: ")
    elif opts.auth_user_pass_required:
        if opts.auth_nocache and opts.auth_user_pass_file:
            return "", ""         # the file is read at each use (for_run below)
        _need_terminal(opts, "auth_user_pass_required", "auth-user-pass", "the username and password: put them "
                       "in an <auth-user-pass> block (two lines) or a file")
        user = input("Username: ")
        pw = getpass.getpass("Password: ")
    else:
        return "", ""
    if opts.static_challenge is not None:
        text, echo = opts.static_challenge
        _need_terminal(opts, "static_challenge", "static-challenge", "the static challenge's response (a GUI "
                       "can answer it through management-query-passwords)")
        # Its control characters shown as `?`: a downloaded profile's text with ESC sequences
        # could otherwise clear the screen, retitle it, or write the clipboard (OSC 52).
        prompt = "CHALLENGE: " + "".join("?" if ord(ch) < 32 or 127 <= ord(ch) < 160 else ch for ch in text) + " "
        response = input(prompt) if echo else getpass.getpass(prompt)
        pw = static_challenge_password(pw, response)
    return user, pw


def static_challenge_password(password: str, response: str) -> str:
    """OpenVPN 2.6's SCRV1 packing of a password and a static challenge's response."""
    # The bytes the file or terminal gave (a Latin-1 password is read with surrogateescape, which
    # a plain encode() refused: a traceback at start instead of a connection).
    b64 = lambda s: base64.b64encode(to_bytes(s)).decode()    # noqa: E731
    return f"SCRV1:{b64(password)}:{b64(response)}"


def _need_terminal(opts: Options, field: str, directive: str, what: str) -> None:
    if not sys.stdin.isatty():
        src = opts.source.get(field) or opts.source.get("auth_user_pass")
        raise ConfigError(f"no terminal to ask for {what}", src[0] if src else opts.path, src[1] if src else None,
                          directive)
