"""`setenv-safe NAME VALUE` as OpenVPN 2.6 turns it into a variable (env_set.c setenv_str_safe ->
setenv_str), one place for the profile's line (config/d_misc.py) and the server's push
(keymethod.py): the name is `OPENVPN_` + NAME written into 64 bytes -- a longer one sets nothing
("setenv_str_safe: name overflow") --, then every character but an ASCII letter, digit or `_` is
dropped from it (CC_NAME); from the value every control character is dropped (CC_PRINT: below
0x20, or DEL). Why the prefix: a server's push can then never set `PATH`, `dev` or `common_name`
for the client's scripts, only variables of its own."""
from __future__ import annotations

import re

PREFIX = "OPENVPN_"
# The longest NAME: OpenVPN writes OPENVPN_<NAME> and its NUL into 64 bytes.
NAME_MAX = 64 - len(PREFIX) - 1

_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")
_NOT_PRINT = re.compile(r"[\x00-\x1f\x7f]")


def env_name(name: str) -> str:
    """The variable a plain `setenv NAME` sets: NAME with all but ASCII letters, digits and `_`
    dropped, as 2.6's setenv_str (CC_NAME); `my-var.x` is `myvarx`. (Ours set `my-var.x`, which
    no shell passes on to what it runs.)"""
    return _NOT_NAME.sub("", name)


def safe_env_name(name: str) -> str | None:
    """The variable `setenv-safe NAME` sets; None when NAME is over NAME_MAX bytes (nothing set)."""
    if len(name.encode("utf-8", "surrogateescape")) > NAME_MAX:
        return None
    return _NOT_NAME.sub("", PREFIX + name)


def safe_env_value(value: str) -> str:
    """The value as OpenVPN 2.6 sets it: its control characters dropped."""
    return _NOT_PRINT.sub("", value)
