"""The environment every command the appliance runs starts from: the config's `setenv` /
`setenv-safe` variables (OpenVPN 2.6's global env set, filled while the config is read) under the
process's own variables and the peer's. One place, for the server's commands (gateway/ops.py) and
the client's tls-verify (gateway/client.py)."""
from __future__ import annotations

import logging
from typing import Callable

log = logging.getLogger("vpn-appliance")


def with_globals(e: dict[str, str], own: dict[str, str], setenv: dict[str, str]) -> dict[str, str]:
    """A command's environment `e` with the process's own variables `own` and the config's
    setenv/setenv-safe ones added, as OpenVPN 2.6 layers them: a setenv variable is set first
    (while the config is read), so any variable of the process or of the client with its name
    replaces it -- `setenv common_name x` can never stand in for the peer's name."""
    out = {k: v for k, v in setenv.items() if k not in e and k not in own}
    out.update(e)
    out.update(own)
    return out


# What a command's environment may take (names, values, their pointers): half the kernel's usual
# limit for arguments and environment together (ARG_MAX, 2 MiB with the default 8 MiB stack), the
# rest for the words. Far above an honest set (1,024 pushed options as 2.6 cuts them: ~280 KB).
ENV_MAX = 1 << 20
# The longest one variable (NAME=VALUE and its NUL) the kernel passes (MAX_ARG_STRLEN, 32 pages):
# a longer one fails the exec (E2BIG) however small the rest.
VAR_MAX = 32 * 4096


def _cost(k: str, v: str) -> int:
    return len(k.encode("utf-8", "surrogateescape")) + len(v.encode("utf-8", "surrogateescape")) + 2 + 8


def env_drops(env: dict[str, str], limit: int = ENV_MAX, keep: Callable[[str], bool] = lambda _k: False) -> set[str] | None:
    """The variables to leave out of `env` so that the rest can be passed to a command: each one
    longer than the kernel takes (VAR_MAX), then the largest until the rest is within `limit`;
    never one `keep` names. None when what `keep` names cannot be passed itself."""
    drop = {k for k, v in env.items() if _cost(k, v) - 8 > VAR_MAX}
    if any(keep(k) for k in drop):
        return None
    size = sum(_cost(k, v) for k, v in env.items() if k not in drop)
    if size <= limit:
        return drop
    for k in sorted(env, key=lambda k: -_cost(k, env[k])):
        if size <= limit:
            break
        if k in drop or keep(k):
            continue
        drop.add(k)
        size -= _cost(k, env[k])
    return drop if size <= limit else None


def said_dropped(label: str, env: dict[str, str], drop: set[str], limit: int = ENV_MAX) -> None:
    """The one warning for variables env_drops left out of a command's environment."""
    log.warning("%s: %d variable(s) left out of its environment (over %d bytes in all, or one over %d), the "
                "largest first: %s", label, len(drop), limit, VAR_MAX, ", ".join(k for k in env if k in drop)[:200])


def fit_env(env: dict[str, str], label: str, limit: int = ENV_MAX) -> dict[str, str]:
    """`env` within `limit`: the largest variables left out (said once) until the rest fits, kept
    in their order. Why: part of it is the server's (1,024 pushed options of up to ~2,000 bytes,
    a certificate's attributes), and past the kernel's limit the command cannot start at all
    (E2BIG) -- a client's `up` then ends its run. As down_root.encode for the root helpers."""
    drop = env_drops(env, limit)
    if not drop:
        return env
    said_dropped(label, env, drop, limit)
    return {k: v for k, v in env.items() if k not in drop}
