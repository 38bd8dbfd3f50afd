"""The environment every command the appliance runs starts from: the config's `setenv` /
`setenv-safe` variables (OpenVPN 2.6's global env set, filled while the config is read) under the
process's own variables and the peer's. One place, for the server's commands (gateway/ops.py) and
the client's tls-verify (gateway/client.py)."""
from __future__ import annotations


def with_globals(e: dict[str, str], own: dict[str, str], setenv: dict[str, str]) -> dict[str, str]:
    """A command's environment `e` with the process's own variables `own` and the config's
    setenv/setenv-safe ones added, as OpenVPN 2.6 layers them: a setenv variable is set first
    (while the config is read), so any variable of the process or of the client with its name
    replaces it -- `setenv common_name x` can never stand in for the peer's name."""
    out = {k: v for k, v in setenv.items() if k not in e and k not in own}
    out.update(e)
    out.update(own)
    return out
