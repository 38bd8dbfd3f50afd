"""The client's username and password for each key-method message: kept for the run, or, with
`auth-nocache`, fetched again at each use and kept by no one in between.

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

import getpass
import logging
import os
from typing import Callable

from ..openvpn.config import Options
from ..openvpn.config.d_security import user_pass_file
from ..openvpn.keymethod import USER_PASS_LEN
from ..openvpn.peernames import from_peer
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
