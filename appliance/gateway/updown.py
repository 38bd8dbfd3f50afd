"""The client's up and down events for what listens to them: `management-up-down` (>UPDOWN:UP /
>UPDOWN:DOWN with the environment as >UPDOWN:ENV,NAME=VALUE lines and >UPDOWN:ENV,END, as OpenVPN
2.6's management_up_down) and the down-root plugin's command (host/down_root.py).

When, as OpenVPN 2.6's client with `persist-tun` and an unchanged push (else see "At a
reconnect" below): UP when the first tunnel of the run is up (do_route, after
the routes: before >STATE:CONNECTED; with route-delay once the delay is over, announce_up),
DOWN when the client ends (close_tun: the management line before the device goes, the
down-root command after it). A run that never got a tunnel up has no
DOWN either (OpenVPN's plugin has no helper then and runs nothing). The environment is the one of
the UP (gateway/updown_env.py): the plugin's command gets what OpenVPN's UP call had (no
`redirect_gateway`, set later by do_route), the management lines what the set held at do_route,
and tls-verify (verify_base) the set as it stands at each handshake. Kept from the first UP: a
reconnect to another remote does not refresh trusted_ip/_port or the routes in it (OpenVPN's set
would), since no UP follows here.

At a reconnect (a SIGUSR1 restart there: ping-restart, a TLS error, a signal), as Debian's 2.6.14
client does (tests/interop/test_reconnect_env_vs_openvpn.py): each connection has a set of its own
(OpenVPN's level-2 context is made afresh), so its tls-verify starts from the settings again.
Without `persist-tun` the tunnel's down side runs at the restart (client.py _close_tunnel): >UPDOWN:DOWN,
route-pre-down, the down-root command, down, each with `signal`; the next connection's tunnel is a
first one again (UP, up `init`, route-up, >UPDOWN:UP with the new push's values). With
`persist-tun` the device stays: nothing runs at the restart (but up-restart's down); the new
connection's set holds its server's chain and address, the push's foreign options and ifconfig_*
(no route_*: do_route does not run again), which the end's route-pre-down, down and >UPDOWN:DOWN
see; the down-root command keeps the first UP's environment (OpenVPN's helper holds that one).
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Callable

from ..openvpn.tls import CERT_UNREADABLE, CHAIN_UNREADABLE, CHAIN_UNREADABLE_SAID
from .script_env import with_globals
from .tunnel import did_redirect
from .updown_env import settings_env, up_env

if TYPE_CHECKING:
    from ..host.down_root import DownRoot
    from .loop import Faults

log = logging.getLogger("vpn-appliance")


def host_net_gateway(not_dev: str | None) -> str:
    """route_net_gateway: the default route's gateway before the tunnel; 0.0.0.0 without one, as
    Debian's 2.6 client sets it where there is no default route (its lab namespace)."""
    try:
        from ..router.routes import RouteSet
        found = RouteSet.net_gateway(False, not_dev=not_dev)
    except Exception:  # noqa: BLE001 - no netlink here (tests): no gateway known
        found = None
    return (found[0] if found is not None and found[0] else "0.0.0.0")


def _with_carried(env: dict[str, str], carried: dict[str, str]) -> dict[str, str]:
    """`env` (newest first) with what the forced close left in the set: set before the reopened
    device's addresses and routes, after the push's foreign options (where 2.6 lists it)."""
    if not carried:
        return env
    out: dict[str, str] = {}
    for k, v in env.items():
        if carried and (k.startswith("foreign_option_") or k == "common_name"):
            out.update(carried)
            carried = {}
        out[k] = v
    out.update(carried)
    return out


class UpDown:
    """The client's UP/DOWN for the management interface and the down-root helper."""

    def __init__(self, opts, net_gateway: Callable[[str | None], str] = host_net_gateway) -> None:
        self.opts = opts
        self.started = time.time()                       # daemon_start_time
        self.net_gateway = net_gateway
        self.helper: "DownRoot | None" = None            # cli.py forks it while root
        self.plugin_env: dict[str, str] | None = None   # the UP call's environment (the command's)
        self.mgmt_env: dict[str, str] | None = None     # the set as do_route left it
        self.this_connection = False     # whether mgmt_env is the current connection's (tls-verify)
        # What a forced close (closing_set) left in the connection's set for the reopened tunnel's
        # UP: 2.6's `signal` stays there (its up and route-up see signal=UNKNOWN).
        self.carried: dict[str, str] = {}
        # The client's counters (client.py sets them): where the chain falls back to depth 0.
        self.faults: "Faults | None" = None

    def _chain(self, session) -> list:
        """The server's chain for the scripts' and management's variables, the peer's (depth 0)
        first. A chain certificate cryptography cannot read gives depth 0 only, as designed, and
        is counted (CHAIN_UNREADABLE, said at WARNING the first five times, then every 1000th);
        any other exception there is our bug: depth 0 too, so the tunnel still comes up, but
        counted and logged as an internal error at the same limited rate. Both were silent
        (lab/reliability/fault_sweep.py)."""
        try:
            return [session.peer_certificate, *session.peer_chain] if session.peer_certificate is not None else []
        except CERT_UNREADABLE:
            if self.faults is not None:
                self.faults.count_warn(CHAIN_UNREADABLE, CHAIN_UNREADABLE_SAID)
        except Exception as e:  # noqa: BLE001 - our bug: depth 0 only, counted (the scripts still run)
            if self.faults is not None:
                self.faults.internal_exc("the up/down environment's certificate chain (depth 0 only)", e)
        return [session.peer_certificate]

    @property
    def wanted(self) -> bool:
        """Whether anything reads the environment (tls-verify does at each later handshake)."""
        o = self.opts
        return bool(o.down_root) or o.management_up_down or bool(o.tls_verify) or bool(
            o.up_script or o.down_script or o.route_up_script or o.route_pre_down_script or o.ipchange_script)

    def verify_base(self, ip: str, port: int) -> dict[str, str]:
        """tls-verify's environment before the chain's variables (tlsverify.chain_calls adds them
        and script_type): OpenVPN 2.6's client runs it with its one environment set as it stands,
        so the settings at the first handshake, and at each later one (renegotiation, reconnect)
        everything the tunnel's UP put there too -- dev, ifconfig_*, route_*, trusted_ip, the last
        chain's tls_* variables (replaced by this one's), not its X509_* -- as Debian's client
        shows (tests/interop/test_down_root_vs_openvpn.py) -- but a new connection's set is
        afresh: the settings again until its tunnel is up. The server's address then, as
        untrusted_ip/untrusted_port, the newest."""
        e = dict(self.mgmt_env) if self.mgmt_env is not None and self.this_connection else \
            with_globals(settings_env(self.opts, self.started), {}, self.opts.setenv)
        for k in ("untrusted_ip", "untrusted_ip6", "untrusted_port"):
            e.pop(k, None)
        # A new handshake clears the X509_* variables first (ssl.c: tls_x509_clear_env; the
        # tls_* ones stay until this chain's replace them).
        e = {k: v for k, v in e.items() if not k.startswith("X509_")}
        return {("untrusted_ip6" if ":" in ip else "untrusted_ip"): ip, "untrusted_port": str(port), **e}

    def connection_env(self, session, remote: tuple, pushed=None, dev: str | None = None) -> dict[str, str]:
        """The set of one connection, which OpenVPN 2.6 makes afresh at each (its level-2 context's
        env_set, inheriting the settings), as Debian's client shows at a reconnect
        (tests/interop/test_client_scripts_vs_openvpn.py): at its first handshake (ipchange's)
        the settings with this server's chain, address and common_name; with `pushed` and `dev`,
        once the preserved device is up again (up-restart's up), also ifconfig_* and the device
        variables -- no route_* (do_route does not run again)."""
        chain = self._chain(session)
        e = up_env(self.opts, pushed, remote=remote, chain=chain, common_name=session.peer_common_name or "",
                   dev=dev or self.opts.dev, net_gateway=None, started=self.started)
        if pushed is None:
            return {k: v for k, v in e.items() if k not in ("script_context", "tun_mtu", "dev", "dev_type")}
        return {k: v for k, v in e.items() if not k.startswith("route_")}

    def new_connection(self) -> None:
        """A connection begins: its set is afresh (tls-verify's base the settings again)."""
        self.this_connection = False

    def up(self, session, remote: tuple, pushed, dev: str, mgmt, announce: bool = True) -> None:
        """A tunnel is up: the first (or the first after forget()) runs the UP; a later one (the
        device persisted) makes this connection's set, as 2.6's do_open_tun with a preserved
        device (its ifconfig_*; dev and the rest only with up-restart, whose up sets them).
        `announce=False`: route-delay holds >UPDOWN:UP back (announce_up says it)."""
        if not self.wanted:
            return
        self.this_connection = True
        if self.plugin_env is not None:
            e = self.connection_env(session, remote, pushed, dev)
            self.mgmt_env = e if self.opts.up_restart else self._persisted_set(session, remote, pushed, dev, e)
            return
        chain = self._chain(session)
        kw = dict(remote=remote, chain=chain, common_name=session.peer_common_name or "", dev=dev,
                  net_gateway=self.net_gateway(dev), started=self.started)
        self.plugin_env = _with_carried(up_env(self.opts, pushed, **kw), self.carried)
        self.mgmt_env = _with_carried(up_env(self.opts, pushed, redirect=did_redirect(self.opts, pushed), **kw),
                                      self.carried)
        self.carried = {}
        if self.opts.up_script:
            # The up script ran before do_route (gateway/client_scripts.py): its script_type is in
            # the set the management lines show, under do_route's redirect_gateway.
            first = next(iter(self.mgmt_env.items()))
            self.mgmt_env = dict([first, ("script_type", "up"), *list(self.mgmt_env.items())[1:]])
        self.up_owed = True
        if announce:
            self.announce_up(mgmt)

    up_owed = False                     # route-delay holds the first tunnel's >UPDOWN:UP back

    def announce_up(self, mgmt) -> None:
        """>UPDOWN:UP with the set as it stands (do_route's: after route-delay, its
        redirect_gateway and route_vpn_gateway in it), once a tunnel: nothing when none is owed
        (a persisted device's reconnect has no UP)."""
        if not self.up_owed:
            return
        self.up_owed = False
        if mgmt is not None and self.opts.management_up_down and self.mgmt_env is not None:
            mgmt.up_down("UP", self.mgmt_env)

    def route_setenv(self, **kw: str) -> None:
        """route.c's setenv on the set as it stands (newest first): a DHCP ACK's router as
        route_vpn_gateway (route_list_add_vpn_gateway, whenever one comes), route-delay's
        redirect_gateway (do_route). Seen by every script and >UPDOWN line after it."""
        if self.mgmt_env is not None:
            self.mgmt_env = {**kw, **{k: v for k, v in self.mgmt_env.items() if k not in kw}}

    def down_notice(self, mgmt) -> None:
        """Before the device goes: >UPDOWN:DOWN."""
        if mgmt is not None and self.opts.management_up_down and self.mgmt_env is not None:
            mgmt.up_down("DOWN", self.mgmt_env)

    def _persisted_set(self, session, remote: tuple, pushed, dev: str, addresses: dict[str, str]) -> dict[str, str]:
        """A reconnect's set while the device persists, newest first: the addresses of the
        device (do_ifconfig_setenv), the push's foreign options, ipchange's script_type (if it
        ran), the server's common_name, address and chain, the settings -- no route_* and no
        device variables (run_up_down sets those for each script)."""
        e = self.connection_env(session, remote, pushed, dev)
        out = {k: v for k, v in addresses.items() if k.startswith("ifconfig_")}
        for k, v in e.items():
            if k.startswith("ifconfig_") or k in ("script_context", "tun_mtu", "dev", "dev_type"):
                continue
            if k == "common_name" and self.opts.ipchange_script and self.opts.script_security >= 2:
                out["script_type"] = "ipchange"
            out[k] = v
        return out

    def closing_set(self, session, remote: tuple, pushed, dev: str) -> None:
        """The set 2.6's forced close sees (persist-tun, the push changed at a reconnect): the
        new connection's, with the kept device's addresses; its `signal` (UNKNOWN) stays for the
        reopened tunnel's UP (carried)."""
        self.mgmt_env = self._persisted_set(session, remote, pushed, dev, self.plugin_env or {})
        self.this_connection = True
        self.carried = {"signal": "UNKNOWN"}

    def forget(self) -> dict[str, str] | None:
        """A restart without persist-tun closed the tunnel (2.6's do_close_tun; >UPDOWN:DOWN and
        the scripts were told first): returns the UP call's environment (the down-root
        command's), None if no tunnel was up. The next tunnel's UP is a first one again."""
        env = self.plugin_env
        self.plugin_env = self.mgmt_env = None
        self.up_owed = False
        if not self.carried:
            self.this_connection = False
        return env

    def down_root_now(self, env: dict[str, str]) -> bool:
        """The down-root command with `env` (a reconnect's, off the loop); True if it ran and
        exited 0, or there is none."""
        helper = self.helper
        if helper is None:
            return True
        log.info("down-root: running %s", " ".join(a for _p, argv in self.opts.down_root for a in argv[:1]))
        return helper.run(env)

    def down_run(self) -> None:
        """After the device went: the down-root command, then the helper ends (with no tunnel
        ever up it ends without running anything)."""
        if self.helper is None:
            return
        try:
            if self.plugin_env is not None:
                log.info("down-root: running %s", " ".join(a for _p, argv in self.opts.down_root for a in argv[:1]))
                self.helper.run(self.plugin_env)
        finally:
            self.helper.close()
            self.helper = None
