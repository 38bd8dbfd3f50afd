"""Environment blocks told to management clients (>CLIENT:...ENV, >UPDOWN:ENV) and `env-filter`:
the ONE place every such block is written, for each management connection at its own level.

As OpenVPN 2.6.14's manage.c writes them (man_output_env, env_filter_match,
man_output_peer_info_env, management_up_down):
- level 0 (the default): every variable, in the block's order;
- level 1 (and any negative level, as 2.6 compares): the X509_* variables and FILTER_NAMES' ones;
  level 2: FILTER_NAMES' only; 3 and above: none. `n_clients` is not among them (hidden from level 1 on), nor are the IV_/UV_ peer-info
  variables of the client's environment;
- at level 1 and above, a login's blocks (>CLIENT:CONNECT, REAUTH and CR_RESPONSE) first give the
  client's peer-info lines unfiltered, at every level (so IV_VER shows at env-filter 3 there, and
  not at all in >CLIENT:ESTABLISHED or DISCONNECT from level 1 on);
- >UPDOWN blocks (a client's management-up-down) are never filtered: 2.6 writes them at level 0
  whatever the connection set.
Before helper mgmt42 the level was applied to finished lines in two places, IV_ kept at level 2
everywhere and hidden at 3: right for a CONNECT at level 2 only."""
from __future__ import annotations

from ..frozen_record import FrozenRecord
from ..openvpn.catoi import atoi
from ..openvpn.peernames import from_peer, to_bytes

# OpenVPN 2.6 writes each ENV line with msg() (manage.c man_output_env), which formats into
# ERR_BUF_SIZE (10240) bytes: a longer line is cut there, the NUL taking the last byte.
ENV_LINE_MAX = 10239
# env_filter_match's names (prefixes of NAME=VALUE), 2.6.14's list.
FILTER_NAMES = ("username=", "password=", "X509_0_CN=", "tls_serial_", "untrusted_ip=", "ifconfig_local=",
                "ifconfig_netmask=", "daemon_start_time=", "daemon_pid=", "dev=", "ifconfig_pool_remote_ip=",
                "ifconfig_pool_netmask=", "time_duration=", "bytes_sent=", "bytes_received=", "session_id=",
                "session_state=")


def env_filter_match(var: str, level: int) -> bool:
    """Whether `var` (NAME=VALUE) is told to a connection at `level`. Only level 0 shows all: a
    negative one filters as level 1 (2.6 tests `== 0`, then `<= 1`, then `<= 2`; fuzz42)."""
    if level == 0:
        return True
    if level <= 1 and var.startswith("X509_"):
        return True
    return level <= 2 and var.startswith(FILTER_NAMES)


# Names the server's own variables in a login's block take (besides the block's own keys): a
# peer-info line of such a name would stand before the real one as if the server had said it.
_OWN_PREFIXES = ("X509_", "tls_")
_OWN_NAMES = frozenset({*(n[:-1] for n in FILTER_NAMES if n.endswith("=")), "common_name", "untrusted_port",
                        "untrusted_ip6", "trusted_ip", "trusted_ip6", "trusted_port", "ifconfig_pool_local_ip"})


def forges_a_variable(name: str, env: dict[str, str]) -> bool:
    """Whether a client's peer-info line named `name` would pass, in a login's >CLIENT block, for
    one of the server's own variables: a name the block's environment holds (before the level
    filters it), or one of the names the server writes (`common_name`, `untrusted_ip`,
    `username`, `password`, `X509_*`, `tls_*`, env-filter's list). 2.6 prints such a line
    (man_output_peer_info_env checks only the characters), so a client naming a line
    `common_name` put its own value before the real one -- at env-filter 1 and 2 as the only one,
    the real `common_name` being filtered out there (review45c). Left out here: a management
    client deciding logins reads the server's identity, whichever value it takes. IV_/UV_ lines
    are the client's own and stay (the environment keeps them too)."""
    if name.startswith(("IV_", "UV_")):
        return False
    return name in env or name in _OWN_NAMES or name.startswith(_OWN_PREFIXES)


def env_line(prefix: str, var: str) -> str:
    """`>PREFIX:ENV,NAME=VALUE`, cut at 2.6's ENV_LINE_MAX bytes. Why cut as 2.6: a certificate's
    x509-track subjectAltName of 5,000 IPv6 addresses (a 90 KB certificate, within a TLS
    handshake's limit) printed a 260 KB line, over a management client's whole output allowance:
    its >CLIENT:CONNECT cut off every management client, the one deciding logins too."""
    line = f">{prefix}:ENV,{var}"
    if len(line) > ENV_LINE_MAX // 4:                  # (a character is at most 4 bytes)
        raw = to_bytes(line)
        if len(raw) > ENV_LINE_MAX:
            line = from_peer(raw[:ENV_LINE_MAX])      # the bytes OpenVPN sends, as sent
    return line


def env_lines(env: dict[str, str], prefix: str = "CLIENT") -> list[str]:
    """Every variable of `env` as ENV lines, and END (level 0)."""
    return [env_line(prefix, f"{k}={v}") for k, v in env.items()] + [f">{prefix}:ENV,END"]


class EnvBlock(FrozenRecord):
    """One notification with an environment: its first line(s), the variables in the order told,
    and for a login's blocks the client's peer-info (told unfiltered from level 1 on)."""
    head: tuple[str, ...]
    env: dict[str, str]
    prefix: str = "CLIENT"
    peer_info: dict[str, str] | None = None
    filtered: bool = True                       # False: >UPDOWN (2.6 writes it at level 0)

    def lines(self, level: int) -> list[str]:
        """The block as a connection at env-filter `level` reads it."""
        if not self.filtered or level == 0:
            return [*self.head, *env_lines(self.env, self.prefix)]
        out = list(self.head)
        if self.peer_info is not None and level > 0:      # (a negative level: filtered, no peer-info)
            out += [env_line(self.prefix, f"{k}={v}") for k, v in self.peer_info.items()
                    if not forges_a_variable(k, self.env)]
        for k, v in self.env.items():
            var = f"{k}={v}"
            if env_filter_match(var, level):
                out.append(env_line(self.prefix, var))
        out.append(f">{self.prefix}:ENV,END")
        return out


def env_filter_command(c, a: list[str]) -> list[str]:
    """`env-filter [N]` in either role (a client has no >CLIENT lines, but keeps the level as
    2.6's does): N read as atoi reads it, none is 0."""
    c.env_filter = atoi(a[1]) if len(a) > 1 else 0
    return [f"SUCCESS: env_filter_level={c.env_filter}"]
