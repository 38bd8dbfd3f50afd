"""Running a server in operation (issue 12), on the server's pump: the management interface, the
status file, ifconfig-pool-persist, client-connect/-disconnect scripts, reload on SIGHUP without
dropping clients, and SIGUSR2 statistics. ServerGateway calls a few hooks (start, each engine
event, after each wake-up, signals, close); everything else lives here.

Reload (SIGHUP, or `signal SIGHUP` on the management interface): the config file is parsed
again; if it does not parse, the server runs on as it was and the error is logged with file:line.
Otherwise the new push options, CRL, certificates, ccd directory, password file and scripts apply
to new clients; established clients keep their session, tunnel and address, except those whose
certificate the (new) CRL revokes, who are disconnected, and those to whom the new config would
give other options (ccd file, push lines, client-connect: openvpn/given.py), who are told RESTART
and reconnect into them, as every client does at 2.6's SIGHUP (_restart_for_reload). What only a restart can change (port,
protocol, device and its MTU, kernel routes, address pools, process settings: RESTART_ONLY) is
kept as it was, with a `file:line` warning; nothing changed is accepted and ignored.
tls-verify and tls-crypt-v2-verify (gateway/tlsverify.py) are applied: to every handshake from
then on, a kept client's next renegotiation included; a tls-verify (or auth-user-pass-verify,
management-client-auth, learn-address) added or changed tells every kept client RESTART, so it
goes through it as at 2.6's SIGHUP (given.py Tightened; the ccd file, duplicate-cn and max-clients
likewise: the README's reload section, reload44's table); a
handshake held for a command the reload replaced is refused when it applies (review45b: the
replaced command's late "yes" let it in unchecked by the new one), and one held whose command the
reload took away is refused (the peer retries under the new config). tls-crypt-v2-verify runs on a
client's key at its first packet only: clients connected with a tls-crypt-v2 key are not run
through one a reload adds, and the reload says so at its line. The
reading -- the config parsed, its key material, files and scripts checked -- runs in the reload's
worker (gateway/reload_reader.py), a `crl-verify` file over 32 KiB then once by the CRL worker, and
the kept clients' ccd files likewise; what the reading gives is applied whole, on the loop, when
it is in: the old config serves meanwhile (Operations.reload).
"""
from __future__ import annotations


import ipaddress
import logging
import os
import re
import signal as _signal
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from ..host import workdir
from ..logsetup import apply_verb
from ..openvpn import events as ev
from ..openvpn.config import ConfigError, Options, load_config, parse_ccd
from ..openvpn.server import ServerSettings
from ..openvpn.serveraddressing import server_addressing
from ..openvpn.poolfile import PoolMemory
from ..openvpn.server_model import StreamKey
from ..openvpn.crl import CrlChecker, background_reader
from ..openvpn.settings import check_crl, check_key_material
from ..openvpn.clientpush import CCD_DEFAULT, ccd_refusal
from ..openvpn.given import (Given, Tightened, admission_of, cipher_dropped, given_under, tightened, tls_version_out,
                             what_differs)
from ..openvpn.errors import RemoteProtocolError
from ..openvpn.keymethod import remap_name
from ..openvpn.l2switch import SwitchDataPath, mac_text
from ..openvpn.tls import (CHAIN_UNREADABLE, CHAIN_UNREADABLE_SAID, TlsSettings, cert_env, chain_or_depth0,
                           peer_rechecker)
from . import status as st_mod
from .eventlog import fmt_addr
from .inactivity import INACTIVE_LOG, Inactivity, check_interval
from .session_limit import SessionLimit
from .management import Management
from ..ioerrors import start_failed
from .ports import PortGone
from .learn import LearnAddress
from .crresponse import CrResponseRuns
from .script_env import with_globals
from .updown_env import route_env
from .scripts import ConnectOutput, ScriptRunner
from .slots import identity_of_v2_key
from .tlsverify import VerifyRunner, make_verify_runner
from .mgmt_auth import ClientAuthWait
from .mgmt_env import ENV_LINE_MAX, EnvBlock, env_lines  # noqa: F401 - ENV_LINE_MAX: its tests' import
from .reload_admission import refused_by_count
from .reload_reader import Outcome, ReloadReader
from .auth_blocks import REFUSED as AUTH_BLOCKS_REFUSED, AuthBlockParser
from .server_files import INLINE_MAX, load_server_settings

log = logging.getLogger("vpn-appliance")

BYTECOUNT_TICK = 1.0
# client-kill CID MSG: how long the client's session stays for MSG to be acknowledged (OpenVPN's
# scheduled-exit-interval default, after which its server ends the instance).
CLIENT_KILL_WAIT = 5.0
# How often a reload waiting for its CRL's reading in the worker looks whether it is in (the
# reading of 100,000 entries takes ~0.3 s).
RELOAD_CRL_POLL = 0.01
# The kept clients a reload verifies again per wake-up of the loop (~0.2 ms each: ~13 ms).
RELOAD_CHECK_BATCH = 64
# A client a reload restarted (told RESTART: its options would differ, given.py) is not restarted
# by another reload within this many seconds of that restart: its next restart waits until then
# (Operations._restart_for_reload). Why: a SIGHUP storm changing ccd files each time (a config
# tool looping) would otherwise restart a client at every reload, never letting it stay up; at
# most one reload restart per client per 30 s, and the last reload's options always apply in the
# end. 30 s: an operator's second edit (a typo fixed) still applies within half a minute.
RELOAD_RESTART_HOLDOFF = 30.0
# What a reload cannot change in a running process. The process settings (host/privileges.py)
# are applied once at start: a reload that adds `mlock` or names another `user` is told so, not
# silently ignored (and a dropped server could not undo or redo a drop anyway). The TUN device
# (`dev`, its `tun-mtu`) and the kernel routes of `route` (server_net.py) are set up once at start
# too. Everything else a server config holds applies to new sessions after a reload (the reload
# code below says where, directive by directive; tests/gateway/test_reload_directives.py).
# `port-share`: its target is resolved and its DIR opened at start (gateway/portshare.py), as
# OpenVPN forks its proxy once; relays under way are kept by a reload either way.
RESTART_ONLY = ("port", "lport", "local", "proto", "proto_family", "dev", "tun_mtu", "route", "server",
                "server_ipv6", "topology", "ifconfig_pool", "management", "ifconfig_pool_persist",
                "user", "group", "mlock", "nice", "x509_username_field", "tls_cert_profile")
_DIRECTIVE_OF = {"proto_family": "proto"}       # the field's directive, where the names differ
RESTART_ONLY += ("port_share",)                 # (see above; a line of its own beside the tuple)
RESTART_ONLY += ("multihome",)                  # the socket asks for pktinfo at start (likewise)
RESTART_ONLY += ("route_ipv6",)                 # the TUN's routes, as `route` (server_net.py)
RESTART_ONLY += ("ifconfig_ipv6", "ifconfig_ipv6_pool")   # the TUN's address and the pool, as server-ipv6
RESTART_ONLY += ("mark", "bind_dev")            # set on the sockets made at start (gateway/system.py)
RESTART_ONLY += ("down_root",)                  # its root helper was forked with the command at start
RESTART_ONLY += ("dev_type", "server_bridge")   # tun or tap: the device and the data path (l2switch.py), made at start
RESTART_ONLY += ("vlan_tagging", "vlan_accept", "vlan_pvid")   # the switch's VLANs, made at start likewise
RESTART_ONLY += ("ifconfig", "server_nopool")   # a written-out server's TUN address; `server`'s pool (serveraddressing.py)
RESTART_ONLY += ("local_port",)                  # the port listened on: the last port/lport line's (after both)
_DIRECTIVE_OF["server_nopool"] = "server"
# The server's own variables in the order OpenVPN's setenv_settings sets them (up_down_env).
_SETTINGS_ORDER = ("config", "verb", "daemon", "daemon_log_redirect", "daemon_start_time", "daemon_pid",
                   "proto_1", "local_port_1", "remote_port_1")


def restart_only_changes(old, new) -> list[str]:
    """The RESTART_ONLY directives `new` changes, each as a `file:line: directive: ...` warning
    (the line that now sets it, or the old one for a directive taken out); `new` is given the old
    values back, so what runs is what the warning says."""
    out = []
    for f in RESTART_ONLY:
        if getattr(new, f) == getattr(old, f):
            continue
        if f in ("port", "lport"):
            # Kept as they were, said only where the port listened on moves (local_port, below):
            # `rport`, or an `lport` naming the port already listened on, moves nothing -- each
            # was told as "port/lport: changed; takes effect at restart" (review50e).
            setattr(new, f, getattr(old, f))
            continue
        name = _DIRECTIVE_OF.get(f, f.replace("_", "-"))
        path, line = new.source.get(f) or old.source.get(f) or (new.path, None)
        if f == "local_port":               # set by `port` or `lport`: named as the line that sets it
            src = new.source if f in new.source else old.source
            name = "lport" if src.get("lport") == src.get(f) else "port"
        out.append(str(ConfigError("changed; takes effect at restart (kept as it was until then)", path, line, name)))
        setattr(new, f, getattr(old, f))
    return out


def check_scripts(o) -> None:
    """client-connect/-disconnect, learn-address and an auth-user-pass-verify command need `script-security 2`
    (OpenVPN refuses to run them otherwise, and every login would then fail)."""
    for field in ("auth_user_pass_verify_script", "client_connect", "client_disconnect", "learn_address",
                  "tls_verify", "tls_crypt_v2_verify", "client_crresponse"):
        if getattr(o, field) and o.script_security < 2:
            d = "auth-user-pass-verify" if field.startswith("auth") else field.replace("_", "-")
            path, line = o.source.get(field, (o.path, None))
            raise ConfigError("scripts run only with `script-security 2`", path, line, d)



# A management client-auth block up to this many bytes is parsed on the loop (a few hundred
# lines: under ~10 ms); a larger one by a worker. The same bound as a ccd file's (server_files).
AUTH_BLOCK_INLINE_MAX = INLINE_MAX


def _parsed_auth_block(text: str):
    """A client-auth block's CcdOptions, or the ConfigError that refuses its client."""
    try:
        return parse_ccd(text, "<client-auth config>")
    except ConfigError as e:
        return e
    except Exception as e:  # noqa: BLE001 - our bug (maybe in a worker): that client refused, saying so
        return ConfigError(f"cannot parse it: {type(e).__name__}", "<client-auth config>")


class ClientInfo:
    __slots__ = ("cid", "since", "rec", "established", "connect_ran", "mgmt_config", "chain_env", "asked_username",
                 "restart", "heir", "restarts", "continues", "connect_ccd", "announced", "told_addresses",
                 "mgmt_kid")

    def __init__(self, cid: int, since: float, rec) -> None:
        self.cid = cid
        self.since = since
        self.rec = rec
        self.established = False
        self.connect_ran = False
        self.mgmt_config: list[str] | None = None      # client-auth's config lines, for the connect
        self.mgmt_kid = 0                               # ... and the KID of the login they answered
        # (certificate, chain, x509-track lines, their variables): Operations._chain_env's one reading.
        self.chain_env: tuple | None = None
        # The username of a login being checked: 2.6's status shows it meanwhile (tls_lock_username
        # at a deferred verdict), before the session holds it.
        self.asked_username: str | None = None
        # A restart of a client from its address (OpenVPN 2.6: a new session of the same
        # instance): it has that client's ID and connected-since, and its login is a REAUTH.
        self.restart = False
        self.heir = None            # the restart of this client under way, if any (its record)
        self.restarts = None        # a restart's: the record of the client it restarts
        # A restart of an established client is that connection going on, as 2.6's instance in
        # CAS_RECONNECT_PENDING (ssl.c tls_multi_process): no client-connect, no >CLIENT:ESTABLISHED
        # for it, no client-disconnect or >CLIENT:DISCONNECT for the session it replaces; the
        # options client-connect (or client-auth) gave the connection hold for it (connect_ccd).
        self.continues = False
        self.connect_ccd = None     # the per-client options this connection was admitted with
        # A login of this connection was announced to the management client (>CLIENT:CONNECT /
        # REAUTH): 2.6's DAF_INITIAL_AUTH, without which it tells no >CLIENT:ADDRESS.
        self.announced = False
        # The >CLIENT:ADDRESS lines of its admission, when learn-address decided them (admitted).
        self.told_addresses: list[str] | None = None


@dataclass
class _Recheck:
    """A reload's pass over the clients it found (Operations._recheck)."""
    gen: int
    tls: TlsSettings
    check: Callable
    ctx: object
    fresh: object                           # the new config's session settings
    path: str
    todo: deque
    found: list = field(default_factory=list)   # the clients it found connected (the line's "kept")
    dropped: int = 0
    ccd: object = None                      # the new config's client-config-dir (name -> file), if any
    ccd_exclusive: bool = False
    worker_check: object = None             # the worker's own checker (_batch_verdicts)
    st: object = None                       # the new config's ServerSettings (what it gives: given.py)
    # The clients the new config refuses by counting (duplicate-cn, max-clients): id(rec) -> why
    # (gateway/reload_admission.py), worked out when the reload applies.
    refused: dict = field(default_factory=dict)
    # The admission checks of the config the reload replaced (given.admission_of): those a client
    # found before its push passed (given.py tightened; _verdicts_in).
    old_admission: tuple = ()
    # id(rec) of the clients not yet given their options when the reload applied: past their
    # checks (if at all) under the old config, whatever their push records later (review45b).
    unpushed: set = field(default_factory=set)


@dataclass
class _Reload:
    """A reload read and checked, waiting for its CRL (Operations.reload)."""
    old: Options
    new: Options
    st: ServerSettings
    tls: TlsSettings
    held: "CrlChecker | None" = None        # the checker in force, its own readings held meanwhile
    restart_only: list[str] = field(default_factory=list)  # other changes, for a restart (reload_options)



def _with_credentials(rec) -> bool:
    """Whether the client logged in with a username (its first handshake's, as the login checked
    it): auth-user-pass-optional taken away at a reload is then none it came in by (given.py)."""
    return bool(getattr(rec.session, "peer_username", None))

class Operations:
    def __init__(self, gw, wall=time.time, scripts: ScriptRunner | None = None, reload_source=None) -> None:
        self.gw = gw
        self.wall = wall
        self.started = wall()
        self._net_gateway: str | None = None     # route_net_gateway, found once (_server_tunnel_env)
        self.traffic = st_mod.Traffic()         # tunnel bytes (inactive)
        self.link = st_mod.LinkBytes()          # link bytes (status, bytecount, load-stats)
        self.info: dict[int, ClientInfo] = {}       # id(rec) -> info
        self.next_cid = 0
        # TCP connections accepted whose session is not made yet (no reset read): their client
        # ID, connected-since and peer-id, as OpenVPN 2.6 gives them at accept (stream_accepted).
        self.streams: dict[object, tuple[int, float, int]] = {}
        self.mgmt: Management | None = None
        self.client_auth: ClientAuthWait | None = None  # management-client-auth (mgmt_auth.py)
        self._client_auth_away: ClientAuthWait | None = None   # ... while a reload has taken it away
        self.scripts = scripts
        self.learn = LearnAddress(self)             # learn-address (gateway/learn.py)
        self.crr_runs = CrResponseRuns()            # client-crresponse (gateway/crresponse.py)
        self.verify: VerifyRunner | None = None      # tls-verify, tls-crypt-v2-verify (gateway/tlsverify.py)
        self.reload_source = reload_source          # () -> config text, for tests; else the file
        # (crl_reader) -> the new Options, their TLS settings (key material checked, the CRL's
        # reading left to the caller) and warnings for what else changed that applies at a restart
        # only; where the config file alone is not the source: a server run from an appliance TOML
        # re-reads the TOML (its [vpn] profile may be inline; run_toml sets config.schema.server_reload).
        self.reload_options: Callable[[Callable], tuple[Options, TlsSettings, list[str]]] | None = None
        self.reloads = 0
        self._reload_pending: _Reload | None = None  # a reload waiting for its CRL's reading
        # The reload's worker (gateway/reload_reader.py), made at the first reload; `reload_inline`
        # (tests on a fake clock): its jobs run in the caller, at once.
        self.reload_reader: ReloadReader | None = None
        self.reload_inline = False
        # A large management client-auth block's parser, made at the first such block (its own
        # worker, so a reload's reading never waits behind one, nor one behind a reload): 100k
        # iroute lines took ~4-9 s of parse_ccd on the loop, every client's packets waiting.
        self.auth_block_reader: AuthBlockParser | None = None
        self._reload_busy = False                    # a reload being read (or its CRL), not applied yet
        self._reload_restart = False                 # ... for a SIGHUP: >UPDOWN:UP once it is applied
        # >BYTECOUNT_CLI (_bytecount): each client's link bytes at the last tick, when they last
        # moved, and per management connection when each client was last told to it.
        self._bc_prev: dict[int, tuple[int, int]] = {}
        self._bc_moved: dict[int, float] = {}
        self._bc_told: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.stop_why = "SIGTERM"                    # the stop's >STATE:...,EXITING,<this> (on_signal)
        self._reload_result: bool | None = None      # its outcome, once known (reload's return, inline)
        self._reload_again = False                   # and one asked for meanwhile
        self._again_restart = False                  # ... by a SIGHUP
        self._recheck_gen = 0                        # the latest reload's pass over its clients (_recheck)
        # Reload restarts (_restart_for_reload): (common name, real IP) -> (when, the pass's gen),
        # and the restarts held off by RELOAD_RESTART_HOLDOFF: id(rec) -> (rec, why, gen, due).
        self._reload_restarted: dict[tuple, tuple[float, int]] = {}
        self._restart_held: dict[int, tuple] = {}
        self._held_armed: float | None = None   # when the "reload-restart-held" timer fires
        self.pool_memory: PoolMemory | None = None
        self.status_fd: tuple[str, int] | None = None      # the status file, opened before a `user` drop
        self.status_error: str | None = None               # the last write failure, logged once
        self.pool_error: str | None = None                 # ifconfig-pool-persist's, likewise
        self.inactive: dict[int, tuple[object, Inactivity]] = {}   # id(rec) -> (rec, its `inactive` check)
        self.killing: dict[int, tuple[object, str]] = {}   # id(rec) -> (rec, why): client-kill's message in flight
        # session-timeout N (gateway/session_limit.py): each client ended N s after its tunnel came up.
        self.session_limit = SessionLimit(gw.opts.session_timeout, gw.clock, self._arm_session_limit, self._kick)
        o = gw.opts
        if o.ifconfig_pool_persist:
            self.pool_memory = PoolMemory(*o.ifconfig_pool_persist)
            gw.st.pool_memory = self.pool_memory
        self._apply_script_settings(o, gw.st)

    # ---------------------------------------------------------------- set-up
    def _apply_script_settings(self, o, st) -> None:
        check_scripts(o)
        # management-client-auth: its config lines are applied at the connect step.
        # learn-address: a client's push waits for its adds (gateway/learn.py).
        st.defer_connect = bool(o.client_connect or o.management_client_auth or o.learn_address)
        st.connect_command = tuple(o.client_connect or ())
        st.admission = admission_of(o)
        if o.management_client_auth and self.client_auth is None:
            # (back after a reload took it away: its clients' KID counts go on, mgmt_auth.py resumed)
            away, self._client_auth_away = self._client_auth_away, None
            self.client_auth = away.resumed(self._cid_alive) if away is not None else ClientAuthWait()
        elif not o.management_client_auth and self.client_auth is not None:
            for w in list(self.client_auth.by_ckid.values()):     # a reload took it away: decide them
                w.mgmt = True
                self._settle(w)
            self._client_auth_away, self.client_auth = self.client_auth, None
        if (o.client_connect or o.client_disconnect or o.learn_address or o.client_crresponse) and self.scripts is None:
            self.scripts = ScriptRunner()
        if self.scripts is not None:
            self.scripts.tmp_dir = o.tmp_dir        # client-connect's file, where a reload says
        if (o.tls_verify or o.tls_crypt_v2_verify) and self.verify is None:
            # Kept once made: a reload that removes the lines leaves the held handshakes their verdicts.
            self.verify = make_verify_runner(o)

    def start(self) -> None:
        gw, o = self.gw, self.gw.opts
        pump = gw.pump
        if self.scripts is not None and not self.scripts.inline:
            pump.watch(self.scripts, self.scripts.drain)
        if self.verify is not None and not self.verify.inline:
            pump.watch(self.verify, self.verify.drain)
        if o.management:
            try:
                self.mgmt = Management(o.management, pump, self, drops_root=o.user is not None,
                                       peer_ids=(o.management_client_user, o.management_client_group))
            except OSError as e:
                where = o.management[0] if o.management[1] == "unix" else f"{o.management[0]}:{o.management[1]}"
                raise start_failed(o, "management", f"cannot open {where}: {e.strerror or e}") from None
        if o.status:
            pump.timers.arm("status-file", gw.clock(), self._write_status)
            try:            # opened now, while root: a `user` drop follows (status.write_file);
                # non-blocking: a FIFO there without a reader (an operator's slip) hung the start
                self.status_fd = (o.status[0], os.open(o.status[0], st_mod.STATUS_OPEN, 0o644))
            except OSError:
                pass
        if self.pool_memory is not None and self.pool_memory.interval:
            pump.timers.arm("pool-persist", gw.clock() + self.pool_memory.interval, self._save_pool)
        self._arm_inactive()
        if isinstance(gw.dp, SwitchDataPath):           # dev tap: learn-address for MACs
            gw.dp.ask, gw.dp.unlearn, gw.dp.relearn = self._ask_mac, self._unlearn_mac, self._relearn_mac

    def _ask_mac(self, rec, mac: bytes) -> bool:
        """dev tap: `rec` sends from a MAC new to it. True: learn it now (no learn-address, read
        each time: a reload may add or remove it); False: the command decides (learn_result)."""
        o = self.gw.opts
        if not o.learn_address or self.scripts is None or self.learn.holds(rec, mac_text(mac)):
            return True             # (held: learned by the session its restart in place replaced)
        inf = self.info.get(id(rec))
        env = self.env(rec, inf, "learn-address") if inf is not None else {"script_type": "learn-address"}
        dp = self.gw.dp
        self.learn.learn_mac(rec, mac_text(mac), o.learn_address, env,
                             lambda ok: dp.learn_result(rec, mac, ok, self.gw.clock()))
        return False

    def _relearn_mac(self, rec, mac: bytes) -> None:
        """dev tap: the command told again that `rec` holds `mac` (l2switch.py _give_back)."""
        o = self.gw.opts
        if not o.learn_address or self.scripts is None:
            return
        inf = self.info.get(id(rec))
        env = self.env(rec, inf, "learn-address") if inf is not None else {"script_type": "learn-address"}
        self.learn.relearn_mac(rec, mac_text(mac), o.learn_address, env)

    def _unlearn_mac(self, rec, mac: bytes) -> None:
        self.learn.forget_mac(rec, mac_text(mac))

    def close(self) -> None:
        if self.pool_memory is not None:
            self._note_pool()
            try:
                self.pool_memory.save()
            except OSError as e:
                log.warning("ifconfig-pool-persist: cannot write %s: %s", self.pool_memory.path, e)
        if self.gw.opts.status:
            try:
                self._write_status(rearm=False)
            except OSError:
                pass
        if self.status_fd is not None:
            os.close(self.status_fd[1])
            self.status_fd = None
        if self.mgmt is not None:
            self.mgmt.close()
        try:
            self.learn.stop()               # learn-address's deletes, as OpenVPN's at its stop
        except Exception:  # noqa: BLE001
            self.gw.faults.internal("learn-address at stop")
        if self.scripts is not None:
            self.scripts.close()
        if self.verify is not None:
            self.verify.close()
        if self.reload_reader is not None:
            self.reload_reader.close()          # a reading under way is dropped with the process
        if self.auth_block_reader is not None:
            self.auth_block_reader.close()

    # ---------------------------------------------------------------- timers
    def _write_status(self, rearm: bool = True) -> None:
        if not self.gw.opts.status:
            return                          # a reload took `status` away
        path, every = self.gw.opts.status
        try:
            held = self.status_fd[1] if self.status_fd is not None and self.status_fd[0] == path else None
            st_mod.write_file(path, self.status_lines(self.gw.opts.status_version), held)
        except OSError as e:
            # Once per kind of failure, not every interval (`status FILE 1` would log each second).
            if str(e) != self.status_error:
                log.warning("status file %s: %s (said once until it changes)", path, e)
                self.status_error = str(e)
            self._rearm_status(rearm, every)
            return
        if self.status_error is not None:
            log.info("status file %s: written again", path)
            self.status_error = None
        self._rearm_status(rearm, every)

    def _rearm_status(self, rearm: bool, every: int) -> None:
        if rearm:
            self.gw.pump.timers.arm("status-file", self.gw.clock() + every, self._write_status)

    def _note_pool(self) -> None:
        for rec in self.gw.d.clients:
            if rec.session.established:
                self.pool_memory.note(rec.common_name, rec.vaddr, rec.vaddr6)

    def _save_pool(self) -> None:
        self._note_pool()
        try:
            self.pool_memory.save()
        except OSError as e:
            # Once per kind of failure, as the status file's: `ifconfig-pool-persist FILE 1` on a
            # full disk logged it every second.
            if str(e) != self.pool_error:
                log.warning("ifconfig-pool-persist: cannot write %s: %s (said once until it changes)",
                            self.pool_memory.path, e)
                self.pool_error = str(e)
        else:
            if self.pool_error is not None:
                log.info("ifconfig-pool-persist: %s written again", self.pool_memory.path)
                self.pool_error = None
        self.gw.pump.timers.arm("pool-persist", self.gw.clock() + self.pool_memory.interval, self._save_pool)

    def bytecount_changed(self) -> None:
        """The tick starts unless it runs already (re-armed at each `bytecount`, a management client
        repeating the command within a second kept every other one's >BYTECOUNT_CLI away); the
        clients' counts are seen now, so bytes moving before the first tick are told at it."""
        timers = self.gw.pump.timers
        if self.mgmt is not None and any(c.bytecount for c in self.mgmt.conns):
            self._bc_observe(self.gw.clock())
            if not timers.armed("bytecount"):
                timers.arm("bytecount", self.gw.clock() + BYTECOUNT_TICK, self._bytecount)

    def _bc_observe(self, now: float) -> dict[int, tuple[int, int]]:
        """Each established client's link bytes by CID, noting those that moved since last seen."""
        current: dict[int, tuple[int, int]] = {}
        for inf in list(self.info.values()):
            if inf.established and inf.rec.alive:
                counts = current[inf.cid] = self.link.of(inf.rec)
                prev = self._bc_prev.get(inf.cid)
                if prev is not None and prev != counts:
                    self._bc_moved[inf.cid] = now
                self._bc_prev[inf.cid] = counts
        for gone in [cid for cid in self._bc_prev if cid not in current]:
            del self._bc_prev[gone]
            self._bc_moved.pop(gone, None)
        return current

    def _bytecount(self) -> None:
        """>BYTECOUNT_CLI:CID,IN,OUT as OpenVPN 2.6 sends it (manage.h management_bytes_server,
        called as a client's packets are read or written): a client is told to a management
        client that asked for every N s only when its link bytes moved since it was last told,
        and at most every N s -- an idle client is never told (before helper mgmt42 every
        established client was told every N s). Movement is seen at this 1 s tick (and at the
        command): a client's counts differing from the last seen."""
        m = self.mgmt
        if m is None:
            return
        now = self.gw.clock()
        active = [c for c in m.conns if c.bytecount]
        if not active:
            self._bc_prev.clear()
            self._bc_moved.clear()
            return
        current = self._bc_observe(now)
        for c in active:
            told = self._bc_told.setdefault(c, {})
            lines = []
            for cid, (r, w) in current.items():
                last = told.get(cid, float("-inf"))
                if self._bc_moved.get(cid, float("-inf")) > last and now - last >= c.bytecount - 0.5:
                    told[cid] = now
                    lines.append(f">BYTECOUNT_CLI:{cid},{r},{w}")
            for gone in [cid for cid in told if cid not in current]:
                del told[gone]
            if lines:
                c.send_lines(lines)
        self.gw.pump.timers.arm("bytecount", now + BYTECOUNT_TICK, self._bytecount)

    # ---------------------------------------------------------------- questions
    def _real(self, rec) -> tuple[str, int]:
        a = rec.addr
        if isinstance(a, tuple):
            ip = str(a[0])
            return (ip[7:] if ip.startswith("::ffff:") and "." in ip else ip), int(a[1])
        peer = self.gw.conn_addrs.get(a)
        if peer is not None:
            return str(peer[0]), int(peer[1])
        return (a.ip if isinstance(a, StreamKey) else "?"), 0

    def real_str(self, rec) -> str:
        """As OpenVPN 2.6 prints a client's address: IPv4 `ip:port`; IPv6 the address alone (seen
        in the lab with proto udp6)."""
        return self._fmt_real(*self._real(rec))

    @staticmethod
    def _fmt_real(ip: str, port: int) -> str:
        if ip.startswith("::ffff:") and "." in ip:
            ip = ip[7:]
        return ip if ":" in ip else f"{ip}:{port}"

    def rows(self, established_only: bool = False) -> list[st_mod.ClientRow]:
        """The status's client rows. As OpenVPN 2.6's multi_print_status, which lists every
        instance it holds: a handshake under way too, with the common name once the certificate
        is verified (UNDEF before), no virtual address yet and its bytes so far.
        `established_only`: the clients load-stats counts (2.6's n_clients)."""
        out = []
        now = self.wall()
        for inf in self.info.values():
            rec = inf.rec
            if not rec.alive or (established_only and not inf.established):
                continue
            if not inf.established and self.gw.d.record(rec.addr) is not rec:
                continue        # a record the dispatcher no longer holds at its address
            r, w = self.link.of(rec)
            last = now - max(0.0, self.gw.clock() - rec.session.last_recv)
            out.append(st_mod.ClientRow(
                rec.common_name or rec.session.peer_common_name or "UNDEF", self.real_str(rec), rec.vaddr or "", rec.vaddr6 or "", r, w,
                int(inf.since), rec.session.peer_username or inf.asked_username or "UNDEF", inf.cid,
                rec.peer_id if rec.session.peer_id is not None or not inf.established else 0,
                rec.session.cipher or self._cipher_before_negotiation(), int(last),
                self._macs(rec)))
        if not established_only:
            for key, (cid, since, pid) in self.streams.items():
                # A TCP connection with no session yet: 2.6's instance made at accept, as it
                # lists it (seen in the lab: UNDEF, its address, nothing else known, 0 bytes).
                peer = self.gw.conn_addrs.get(key)
                real = "?" if peer is None else self._fmt_real(str(peer[0]), int(peer[1]))
                out.append(st_mod.ClientRow("UNDEF", real, "", "", 0, 0, int(since), "UNDEF", cid, pid,
                                            self._cipher_before_negotiation(), int(since)))
        return out

    def _cipher_before_negotiation(self) -> str:
        """The cipher column of a handshake under way: 2.6 prints its instance's `cipher` option
        until the negotiation replaces it, BF-CBC without one (seen in the lab)."""
        return self.gw.opts.cipher or "BF-CBC"

    def _macs(self, rec) -> list[str] | None:
        """dev tap: the MACs `rec` holds, the routing table's entries as 2.6 lists them (MAC@0)."""
        dp = self.gw.dp
        return [mac_text(m) for m in dp.macs.macs_of(rec)] if isinstance(dp, SwitchDataPath) else None

    def status_lines(self, version: int) -> list[str]:
        return st_mod.render(self.rows(), version, self.wall())

    def load_stats(self) -> tuple[int, int, int]:
        """As OpenVPN 2.6's load-stats: the established clients, and the link bytes of every
        client since the start (its global counters), not of those connected now. Counted, no
        status row built for each (~2-4 µs a client: 32 pipelined load-stats held the loop ~100 ms
        per wake-up at 1,000 clients); the same clients as rows(established_only=True)."""
        n = sum(1 for inf in self.info.values() if inf.established and inf.rec.alive)
        return (n, *self.link.totals((inf.rec for inf in self.info.values()), self.gw.d.stateless_written))

    def state_line(self, notify_at: int | None = None) -> str:
        """`state`'s line, or with `notify_at` the >STATE notification of the same state."""
        pool, a = self.gw.st.pool, server_addressing(self.gw.opts)
        local = (a.local or "") if a is not None else pool.server_ip if pool else ""     # the TUN's address
        t = int(self.started) if notify_at is None else notify_at
        return (">STATE:" if notify_at is not None else "") + f"{t},CONNECTED,SUCCESS,{local},,,,"

    def state_history(self) -> list[str]:
        """`state all`: the states a 2.6 server passes through at start, as Debian's lists them
        (CONNECTING, ASSIGN_IP with the TUN's address, CONNECTED); before, only the last."""
        now = self.state_line()
        t, _, rest = now.partition(",")
        local = rest.split(",")[2]
        return [f"{t},CONNECTING,,,,,,", f"{t},ASSIGN_IP,,{local},,,,", now]

    @property
    def status_version(self) -> int:
        return self.gw.opts.status_version

    @property
    def verb(self) -> int:
        return self.gw.opts.verb

    def set_verb(self, level: int) -> None:
        """The management interface's `verb N`: the log level from now on (until a reload reads
        the config's `verb` again, as in OpenVPN)."""
        self.gw.opts.verb = level
        apply_verb(level)

    # ---------------------------------------------------------------- inactive (gateway/inactivity.py)
    def _arm_inactive(self) -> None:
        """One sweep over the clients every check_interval(N) (N/16, at least 0.5 s; not a timer
        per client): each client's check starts at the first sweep that sees it, and it ends N to
        N + 2 intervals after its last traffic (gateway/inactivity.py)."""
        setting = self.gw.opts.inactive
        if setting:
            self.gw.pump.timers.arm("inactive", self.gw.clock() + check_interval(setting[0]), self._sweep_inactive)
        else:
            self.gw.pump.timers.cancel("inactive")
            self.inactive.clear()

    def _sweep_inactive(self) -> None:
        setting = self.gw.opts.inactive
        if not setting:
            return
        now = self.gw.clock()
        seen: dict[int, tuple[object, Inactivity]] = {}
        for inf in list(self.info.values()):
            rec = inf.rec
            if not inf.established or not rec.alive:
                continue
            r, w = self.traffic.sample(rec)
            total = r + w - rec.session.not_traffic     # pings, OCC, refused packets: no traffic
            known = self.inactive.get(id(rec))
            check = known[1] if known is not None and known[0] is rec else None     # ids are reused
            if check is None:
                check = Inactivity.start(setting, total, now)
            elif check.expired(total, now):
                log.warning("%s/%s: %s: disconnected", rec.common_name, fmt_addr(rec.addr), INACTIVE_LOG)
                self._kick(rec, INACTIVE_LOG)
                continue
            if check is not None:
                seen[id(rec)] = (rec, check)
        self.inactive = seen
        self.gw.pump.timers.arm("inactive", now + check_interval(setting[0]), self._sweep_inactive)

    def _arm_session_limit(self, when: float | None) -> None:
        if when is None:
            self.gw.pump.timers.cancel("session-timeout")
        else:
            self.gw.pump.timers.arm("session-timeout", when, self.session_limit.due)

    # ---------------------------------------------------------------- actions
    def _kick(self, rec, why: str) -> None:
        self.gw.d.kick(rec, self.gw.clock(), why)

    def kill_cn(self, cn: str) -> int:
        recs = [r for r in self.gw.d.clients if r.common_name == cn]
        for r in self._with_restarts(recs):
            self._kick(r, f"killed by the management interface (kill {cn})")
        return len(recs)

    def kill_addr(self, host: str, port: int) -> int:
        recs = [r for r in self.gw.d.clients if self._real(r) == (host, port)]
        for r in self._with_restarts(recs):
            self._kick(r, "killed by the management interface (kill address)")
        return len(recs)

    def _with_restarts(self, recs: list) -> list:
        """The clients and each one's restart under way: one OpenVPN 2.6 instance, which its kill
        ends whole (a restart left behind kept the client's row and peer-id; seen in the lab)."""
        out = list(recs)
        for r in recs:
            inf = self.info.get(id(r))
            if inf is not None and inf.heir is not None and inf.heir.alive and inf.heir not in out:
                out.append(inf.heir)
        return out

    def client_kill(self, cid: int, msg: str) -> bool:
        """As OpenVPN 2.6's `client-kill CID [MSG]`: MSG (RESTART unless given: RESTART,[N] sends
        the client to its next remote, HALT stops it) over the control channel, then the session
        ends once the client acknowledged it, at the latest after CLIENT_KILL_WAIT (OpenVPN: 5 s
        in every case). A client that cannot be told (no control channel yet, or its key's TLS
        failed and is not replaced yet) is dropped at once with the plain exit notification. A
        client restarting from its address has two sessions under its client ID (one 2.6
        instance): both are ended."""
        recs = [inf.rec for inf in self.info.values() if inf.cid == cid and inf.rec.alive]
        for rec in recs:
            why = f"killed by the management interface (client-kill {cid} {msg})"
            if not self._tell_then_end(rec, msg or "RESTART", why):
                self._kick(rec, why)
        return bool(recs)

    def _tell_then_end(self, rec, msg: str, why: str) -> bool:
        """MSG (RESTART, HALT) to `rec` over the control channel; its session ends once the client
        acknowledged it, at the latest after CLIENT_KILL_WAIT. False: it could not be told."""
        now = self.gw.clock()
        if not self.gw.d.tell(rec, now, msg):
            return False
        self.killing[id(rec)] = (rec, why)
        self.gw.pump.timers.arm(f"client-kill-{id(rec)}", now + CLIENT_KILL_WAIT,
                                lambda rec=rec: self._end_kill(rec, wait_over=True))
        return True

    def _end_kill(self, rec, wait_over: bool = False) -> None:
        """A client-kill'ed client acknowledged its message (or the wait is over, or it left)."""
        if not (wait_over or not rec.alive or rec.session.control_acked):
            return
        _, why = self.killing.pop(id(rec), (None, ""))
        self.gw.pump.timers.cancel(f"client-kill-{id(rec)}")
        if why and rec.alive:
            self._kick(rec, why)

    def management_signal(self, name: str) -> None:
        """After the reply, as a signal would come. One timer per signal: with one for all, the
        next management client's signal replaced one not acted on yet (a SIGTERM lost to a
        SIGUSR2); the same signal twice before it is acted on is one, as the kernel's."""
        self.gw.pump.timers.arm(("mgmt-signal", name), self.gw.clock(), lambda: self.on_signal(getattr(_signal, name)))

    def on_signal(self, signum: int) -> None:
        if signum == _signal.SIGUSR1 and self.gw.opts.remap_usr1 == "SIGTERM":
            log.warning("SIGUSR1 remapped to SIGTERM (remap-usr1): stopping")
            self.gw.request_stop()
        elif signum == _signal.SIGHUP or (signum == _signal.SIGUSR1 and not self.gw.opts.persist_tun):
            # 2.6 closes and reopens its device at this restart: at every SIGHUP, at a SIGUSR1
            # without persist-tun (init.c do_close_tun keeps it only for SIGUSR1 + persist-tun):
            # >UPDOWN:DOWN, the config read again, >UPDOWN:UP under the new one (reload).
            self.reload(restart=True)
        elif signum == _signal.SIGUSR1:
            self.reload()
        elif signum == _signal.SIGUSR2:
            self.log_stats()
        elif signum in (_signal.SIGTERM, _signal.SIGINT):
            self.stop_why = _signal.Signals(signum).name
            self.gw.request_stop()

    def log_stats(self) -> None:
        rows, counted = self.rows(), self.rows(established_only=True)
        log.warning("statistics: %d clients, %d bytes in, %d bytes out", len(counted),
                    sum(r.bytes_in for r in counted), sum(r.bytes_out for r in counted))
        for r in rows:              # handshakes under way too, as 2.6's status at SIGUSR2
            log.warning("  %s %s %s cid=%d in=%d out=%d since %s", r.common_name, r.real, r.vaddr, r.cid,
                        r.bytes_in, r.bytes_out, st_mod.tstr(r.since))
        self.gw._log_statistics()

    # ---------------------------------------------------------------- reload
    def reload(self, restart: bool = False) -> bool:
        """Re-read the config and apply it (see the module's docstring). False when the new config
        is refused (the server runs on as it was) -- known here only when the reading ran inline.

        The reading (the config parsed, key material, password file, scripts: ~25 ms, every
        client's packets waiting when it ran on the loop) runs in the reload's worker, then a
        large CRL's in the CRL worker (at 100,000 entries ~0.35 s); the new config then applies,
        all at once, on the loop (True now: under way). Nothing of it is applied before: clients
        connecting meanwhile are served by the old config, and found by the reload's pass when
        it applies; those leaving meanwhile are not in it. A reload asked for meanwhile (a
        second SIGHUP, the file replaced again) follows it, reading the file as it is then; those
        asked for during one reading are one, as the kernel merges pending signals.
        `restart` (SIGHUP, SIGUSR1 without persist-tun): >UPDOWN:DOWN now and >UPDOWN:UP once
        the reload is applied or refused, under the config then in force, as 2.6's restart."""
        if self._reload_busy:
            self._reload_again = True
            self._again_restart = self._again_restart or restart
            log.warning("reload: one is under way (its files being read); another follows it")
            return True
        if restart:
            self.gw.restart_down()
        self._reload_busy, self._reload_restart, self._reload_result = True, restart, None
        if self.reload_reader is None:
            self.reload_reader = ReloadReader(inline=self.reload_inline)
            if not self.reload_inline:
                self.gw.pump.watch(self.reload_reader, self.reload_reader.drain)
        self.reload_reader.submit(self._prepare_reload, self._reload_prepared)
        return True if self._reload_result is None else self._reload_result

    def _reload_prepared(self, outcome: Outcome) -> None:
        """On the loop: the reading is in. Refused (logged), or applied now, or after its CRL's
        reading (_reload_read)."""
        ok = False
        try:
            try:
                pending = outcome.value()
            except (ConfigError, OSError) as e:
                log.error("reload: the new config is not used, the server runs on as it was:\n%s", e)
                return
            except Exception as e:  # noqa: BLE001 - our bug in the reading: refused, the server runs on
                self.gw.faults.internal_exc("a reload's reading", e)
                log.error("reload: the new config is not used, the server runs on as it was (internal error)")
                return
            assert isinstance(pending, _Reload)
            if self.gw.result is not None or self.gw._restart_deadline is not None:
                # SIGTERM came during the reading: the server is on its way out (telling its
                # clients RESTART), under the config it runs on.
                log.info("reload: the server is stopping; the config read is not applied")
                return
            crl = pending.tls.crl
            if crl is None or not crl.reading:
                ok = self._commit_reload(pending)
                return
            self._reload_pending = pending
            old_crl = self.gw.st.session_config(0).tls.crl
            if old_crl is not None and old_crl is not crl:
                old_crl.held = True         # no second reading of a file the reload reads (CrlChecker.held)
                pending.held = old_crl
            log.info("reload: reading CRL %s in the background; the new config applies once it is read", crl.where)
            self.gw.pump.timers.arm("reload-crl", self.gw.clock() + RELOAD_CRL_POLL, self._reload_read)
        finally:
            if self._reload_pending is None:
                self._reload_done(ok)

    def _reload_read(self) -> None:
        """Whether the CRL worker has finished a reload's reading: if so the reload goes on (on
        the loop), else a look again shortly. A timer, not a wake-up from the worker: it runs
        only while a reload waits, and runs the same on the tests' fake clock."""
        pending = self._reload_pending
        if pending is None:
            return
        if pending.tls.crl.reading:
            self.gw.pump.timers.arm("reload-crl", self.gw.clock() + RELOAD_CRL_POLL, self._reload_read)
            return
        self._reload_pending = None
        ok = False
        try:
            ok = self._commit_reload(pending)
        finally:
            if pending.held is not None:
                pending.held.held = False   # in force still if the reload was refused: reads again
            self._reload_done(ok)

    def _reload_done(self, ok: bool) -> None:
        """A reload applied (ok) or refused: a SIGHUP's >UPDOWN:UP, then the reload asked for
        meanwhile, if any."""
        self._reload_busy, self._reload_result = False, ok
        if self._reload_restart and (self.gw.result is not None or self.gw._restart_deadline is not None):
            pass        # stopping: no UP; the stop then says no DOWN either (stop_notices), as 2.6
        elif self._reload_restart:
            self._reload_restart = False
            self.up_down("UP")
        if self._reload_again:
            restart, self._reload_again, self._again_restart = self._again_restart, False, False
            self.reload(restart=restart)

    def _prepare_reload(self) -> "_Reload":
        """Everything of a reload that reads files and may fail, the CRL's reading started (a
        large file in the worker); nothing is applied yet. ConfigError/OSError: refused."""
        gw = self.gw
        old = gw.opts
        tls: TlsSettings | None = None
        restart_only: list[str] = []
        if self.reload_source is not None:
            from ..openvpn.config import parse_config
            new = parse_config(self.reload_source(), old.path, ignore_scripts=old.ignore_scripts)
        elif self.reload_options is not None:
            new, tls, restart_only = self.reload_options(background_reader)
        elif old.cmdline is not None:           # started as `openvpn --config ...` (config/cmdline.py)
            from ..openvpn.config import reparse_command_line
            new = reparse_command_line(old.cmdline, old.ignore_scripts)
        else:
            new = load_config(old.path, ignore_scripts=old.ignore_scripts, again=True)
        if new.role != "server":
            raise ConfigError("not a server configuration any more", old.path, None, None)
        if new.auth_pam != old.auth_pam:
            # Its root helper starts with the server, before the drop of root (gateway/pam_check.py).
            path, line = new.source.get("auth_pam") or old.source.get("auth_pam") or (new.path, None)
            raise ConfigError("the auth-pam plugin line changed: a reload cannot change it; restart", path, line,
                              "plugin")
        if tls is None:
            tls = check_key_material(new, crl_reader=background_reader)
        st = load_server_settings(new, tls)
        check_scripts(new)
        if tls.crl is not None:
            tls.crl.refresh()               # last: a large file in the worker, a small one now
        return _Reload(old, new, st, tls, restart_only=restart_only)

    def _commit_reload(self, p: "_Reload") -> bool:
        """The reload proper, once its CRL is read: the CRL's own check (the last that may refuse
        the new config), then everything applied at once, on the loop."""
        gw = self.gw
        old, new, st = p.old, p.new, p.st
        moved = False
        try:
            check_crl(new, p.tls)
            if new.management_client_auth and self.mgmt is None:
                # `management` itself takes effect at a restart: no client could answer the logins.
                path, line = new.source.get("management_client_auth", (new.path, None))
                raise ConfigError("no management interface runs (`management` takes effect at a restart): "
                                  "every login would wait for an answer that cannot come", path, line,
                                  "management-client-auth")
            # A new `cd`: the process moves there, so the scripts run where the new config's
            # relative names are read from (host/workdir.py), as after a restart.
            if (why := workdir.follow_reload(old, new)) is not None:
                path, line = new.source.get("cd_dir", (new.path, None))
                raise ConfigError(why, path, line, "cd")
            moved = new.cd_dir != old.cd_dir
            had_scripts, had_verify = self.scripts, self.verify
            self._apply_script_settings(new, st)
            if self.verify is not None and self.verify is not had_verify and not self.verify.inline:
                gw.pump.watch(self.verify, self.verify.drain)
            if self.scripts is not None and self.scripts is not had_scripts and not self.scripts.inline:
                gw.pump.watch(self.scripts, self.scripts.drain)
        except (ConfigError, OSError) as e:
            if moved:
                workdir.back_to(old)
            log.error("reload: the new config is not used, the server runs on as it was:\n%s", e)
            return False
        for line in restart_only_changes(old, new) + p.restart_only:
            log.warning("reload: %s", line)
        # x509-username-field names every client (pool, ccd, the CN lock of renegotiations): the
        # TLS settings read from the new file follow the name kept.
        p.tls.username_field = new.x509_username_field
        # tls-cert-profile likewise: the security level of every context made from now on is the
        # one kept (a reload to `insecure` said "kept as it was" and let weaker peer keys in).
        p.tls.cert_profile = new.tls_cert_profile
        cur = gw.st
        st.pool, st.pool6, st.pool_memory = cur.pool, cur.pool6, cur.pool_memory
        st.tcp = cur.tcp
        gw.opts = new
        gw.st = st
        gw.attach_ccd_reader()              # the same worker: reads under way still resume their clients
        if gw.ccd_reader is not None:
            gw.ccd_reader.reloaded()        # ... but a client asking after the reload gets a new read
        d = gw.d
        d.apply_settings(st)                # new keys, certificates, CRL, hand-window (cookies) for new handshakes
        gw.dp.c2c = st.client_to_client     # taken away: clients are kept apart from now on
        if isinstance(gw.dp, SwitchDataPath):
            gw.dp.macs.per_client = max(st.max_routes_per_client, 1)   # dev tap's MAC quota: new MACs from now on
        gw.set_mss_rule(new)                # mssfix (and what it depends on): SYNs from now on
        if self.mgmt is not None:           # management-client-user/-group: open connections too
            self.mgmt.set_peer_ids((new.management_client_user, new.management_client_group))
        if new.verb != old.verb:
            apply_verb(new.verb)            # OpenVPN's SIGHUP applies a new verb too
        # max-clients: read where it counts (admission, and ServerGateway.max_conns for TCP).
        if gw.auth is not None and st.verify_user is not None and \
                getattr(gw.auth.verify, "workers", 1) == getattr(st.verify_user, "workers", 1):
            gw.auth.verify = st.verify_user
            gw.auth.defer_limit = float(getattr(st.verify_user, "defer_limit", gw.auth.defer_limit))
        elif st.defer_auth and st.verify_user is not None:
            if gw.auth is not None:
                # From a password file to a command or back: a checker with the other's workers.
                # A check under way then fails by the client's hand-window (it retries).
                if not gw.auth.inline:
                    gw.pump.unwatch(gw.auth)
                gw.auth.close()
            # auth-user-pass-verify added: without a checker every login was refused as
            # "no password checker" (AUTH_FAILED,TEMP), and clients retried for ever.
            gw.auth = gw.make_auth(st.verify_user)
            if not gw.auth.inline:
                gw.pump.watch(gw.auth, gw.auth.drain)
        self.reloads += 1
        if new.status:
            gw.pump.timers.arm("status-file", gw.clock(), self._write_status)   # new file or interval
        else:
            gw.pump.timers.cancel("status-file")
        if new.inactive != old.inactive:
            self.inactive.clear()           # every client starts the new N seconds now
            self._arm_inactive()
        if new.session_timeout != old.session_timeout:
            self.session_limit.set_seconds(new.session_timeout)     # from each kept client's start
        tls = p.tls                         # its CRL was read just now, with the new config
        gw.read_crl_in_background(st)
        self._recheck_gen += 1
        run = _Recheck(self._recheck_gen, tls, peer_rechecker(tls), d.tls_context(), st.session_config(0),
                       new.path, deque(list(d.clients) + list(d.pending.values())), list(d.clients),
                       ccd=st.ccd, ccd_exclusive=st.ccd_exclusive, st=st)
        run.old_admission = tuple(getattr(cur, "admission", ()) or ())
        run.unpushed = {id(r) for r in run.todo if r.given is None}
        # duplicate-cn and max-clients as a connect decides them (count_checks.py), over every
        # client holding a place: those whose client-connect is pending too (admit45: they
        # count at a connect, and were let in beside a session of their name, or over the limit).
        run.refused = refused_by_count(
            run.todo, st.duplicate_cn, st.max_clients, self._connected_order, d._restarted,
            judged=lambda r: id(r) not in self.killing and not r.reload_restart and not r.session.restart_sent)
        gw.pump.timers.cancel("reload-recheck")     # an earlier reload's pass: this one checks everyone
        self._forget_old_restarts()
        fresh, now = run.fresh, gw.clock()
        # A handshake waiting for the tls-verify command this reload replaced: that command's
        # verdict no longer decides (its "yes" let the client in, and its push then recorded the
        # new command as passed: review45b). Refused; the peer's retry meets the new command.
        replaced = tightened(run.old_admission, st.admission, only="tls-verify")
        awaiting = []
        for rec in run.todo:                # what costs nothing, for every client at once
            # Until its verdict, a restart in place is a new connection (it would carry the old
            # options past this pass, which has the record it replaced: review44b).
            rec.reload_pending = True
            s = rec.session
            # Tokens of users the new password file dropped: refused; a new auth-gen-token
            # policy (secret, lifetime, renewal, or none) holds for kept sessions too.
            s.cfg.token_user_known, s.cfg.wall_clock = fresh.token_user_known, fresh.wall_clock
            s.token_policy_changed(fresh.gen_token, fresh.token_external, now)
            # A handshake under way (the first, or a renegotiation) ends under the new checks,
            # the new CA store included: its TLS started with the old one, so at completion the
            # chain is verified again as a kept client's is here. The next ones start under them.
            for ks in s.keys.values():
                if ks.tls is not None:
                    ks.tls.settings = tls
                    if not ks.tls.handshake_done:
                        ks.tls.verify_again = run.check
                    if replaced is not None and ks.tls.verdict_awaited:
                        awaiting.append((rec, ks.key_id, ks.tls))
            s.cfg.require_ekm = fresh.require_ekm
        for rec, key_id, check in awaiting:
            if rec.alive:
                log.warning("%s: %s while its handshake waited for it: refused (it retries under the new one)",
                            fmt_addr(rec.addr), replaced)
                d.tls_verify_result(rec, key_id, False, now, check=check)
        self._recheck(run)
        self._check_kept_v2_keys(old, new)
        if self.mgmt is not None:
            t = int(self.wall())
            self.mgmt.notify([f">STATE:{t},RECONNECTING,SIGHUP,,,,,", self.state_line(t)], "state_on")
        return True

    def _recheck(self, run: "_Recheck") -> None:
        """A reload's pass over the clients it found: each one's chain verified again under the
        new config (kept, or disconnected), RELOAD_CHECK_BATCH of them per wake-up of the loop.
        All at once, a reload held the loop ~0.2 ms a client (~0.2 s at 1,000 clients, every
        client's packets waiting), and a SIGHUP storm ran such stalls back to back. Until its
        turn a client runs on under the settings it had; one that renegotiates meanwhile is
        verified by the new config at its turn all the same (its handshake's verify_again, or
        the check here after it), and clients that arrive after the reload start under it.

        The verification itself (~0.27 ms a client: ~17 ms a batch on the loop, 50-115 ms on a
        loaded machine) is pure given the new CA store and CRL: it runs in the reload's worker
        with the batch's ccd files (_batch_verdicts), and the loop only takes what it needs from
        each session here and applies the verdicts when they are in (_verdicts_in)."""
        if run.gen != self._recheck_gen:
            return                          # a later reload took over (it checks every client)
        todo = run.todo
        due = []
        if run.tls.crl is not None:
            run.tls.crl.refresh()           # a change since: read here, as a handshake's check would
        for _ in range(RELOAD_CHECK_BATCH):
            if not todo:
                break
            rec = todo.popleft()
            if not rec.alive:
                continue                    # left (or was replaced) before its turn
            try:
                got = self._recheck_take(run, rec)
            except Exception:  # noqa: BLE001 - our bug in its turn: that client ends, the pass goes on
                # Fail closed: not kept unchecked. Raised out, it ended the pass there, and the
                # clients after it that the new config refuses kept their tunnels for good.
                self._recheck_bug(rec)
                continue
            if got is not None:
                due.append(got)
        if not due:
            self._recheck_next(run)
            return
        reader = self.reload_reader or ReloadReader(inline=True)
        reader.submit(lambda: self._batch_verdicts(run, due), lambda outcome: self._verdicts_in(run, due, outcome))

    def _connected_order(self, rec) -> int:
        """When `rec` connected, as its client ID (reload_admission.py keeps the oldest/newest)."""
        inf = self.info.get(id(rec))
        return inf.cid if inf is not None else 1 << 62

    def _recheck_bug(self, rec) -> None:
        self.gw.faults.internal("a reload's check of a client")
        if rec.alive:
            self.gw.d.end(rec, "internal error (its check at a reload)")

    def _recheck_take(self, run: "_Recheck", rec) -> tuple | None:
        """One client's turn in a reload's pass, on the loop: a key begun since the reload is told
        to end under the new checks; a client with no peer verified yet takes the new settings
        now (its handshake's verify_again checks it). Else (rec, certificate, chain, the name its
        ccd file is read by (_ccd_name), what it was given) for the worker's check: the file read
        too for an established client, or one past its push whose connect is still under way (a
        client-connect script, a large ccd file): it may have read its file as it was before the
        reload, and the pass would have left it in after it, a `disable` written with the reload
        never applied (atk41)."""
        s = rec.session
        self._keys_under(run, s)
        if not any(ks.tls is not None and ks.tls.handshake_done for ks in s.keys.values()):
            s.cfg.tls, s.tls_context = run.tls, run.ctx     # no peer verified yet
            rec.reload_pending = False      # (its options come from the new config at its push)
            return None
        cert = s.peer_certificate
        try:
            chain: list | Exception = list(s.peer_chain) if cert is not None else []
        except Exception as e:  # noqa: BLE001 - a chain that cannot be read: the worker's check says why
            chain = e
        return rec, cert, chain, self._ccd_name(rec), rec.given

    def _ccd_name(self, rec) -> str | None:
        """The name a reload's pass finds a client's ccd file by: its common name, set at its push
        (the username with username-as-common-name); before its push, for a restart in place that
        takes its connection's options over, that connection's name (the restart is locked to its
        identity: control.py lock_identity_of). Else None: no ccd verdict, its push (to come)
        reads the file as the reload left it. soak42: such clients were looked up under "" --
        'its client-config-dir file is gone' (told RESTART), or refused under ccd-exclusive."""
        if rec.common_name is not None:
            return rec.common_name
        inf = self.info.get(id(rec))
        if rec.continues and inf is not None and inf.restarts is not None:
            return inf.restarts.common_name
        return None

    @staticmethod
    def _keys_under(run: "_Recheck", s) -> None:
        for ks in s.keys.values():      # a key begun since the reload, under the old context
            if ks.tls is not None and not ks.tls.handshake_done and ks.tls.verify_again is None:
                ks.tls.settings, ks.tls.verify_again = run.tls, run.check

    def _batch_verdicts(self, run: "_Recheck", due: list) -> tuple[list, dict, list]:
        """In the reload's worker: each client's chain verified under the new config ((None,
        digests): kept; (why, None): not), then the ccd files of those kept and established,
        then for each client why the new config would give it other options (given.py; None: the
        same, or not known -- a file that does not parse is refused above (ccd_refusal); a
        Given: what it would be given now, for a client given nothing yet: _given_since).
        The worker's own checker (peer_rechecker holds an SSL context it changes per check; the
        loop's, run.check, serves handshakes ending meanwhile), built at the pass's first batch;
        the CRL as the loop refreshed it before the batch. Nothing for a pass a later reload
        took over (its own pass checks everyone)."""
        if run.gen != self._recheck_gen:
            return [], {}, []
        if run.worker_check is None:
            run.worker_check = peer_rechecker(run.tls, refresh_crl=False)
        check = run.worker_check
        chains: list = []
        names: list[str] = []
        for rec, cert, chain, name, _given in due:
            def chain_of(c=chain) -> list:
                if isinstance(c, Exception):
                    raise c
                return c
            try:
                got = (None, check(cert, chain_of))
            except RemoteProtocolError as e:
                got = (str(e), None)
            except Exception as e:  # noqa: BLE001 - fail closed, and the next client is still checked
                # A chain we cannot read or check (a certificate cryptography refuses, our bug):
                # not kept, as the handshake's own check would not have let it in.
                got = (f"its certificate chain cannot be checked against the new config ({e})", None)
            chains.append(got)
            if got[0] is None and name is not None and run.ccd is not None:
                names.append(name)
        ccd, files = _ccd_verdicts(run.ccd, run.ccd_exclusive, names) if names else ({}, {})
        differs: list = []
        for (rec, _cert, _chain, name, given), (why, _d) in zip(due, chains):
            file = files.get(name, _CCD_UNCHECKED) if run.ccd is not None else None
            if why is not None or file is _CCD_UNCHECKED or run.st is None:
                differs.append(None)        # refused anyway, or not known (no name to look it up by yet)
            elif given is None:
                differs.append(given_under(run.st, file))   # none yet: decided on the loop (_given_since)
            else:
                differs.append(what_differs(given, given_under(run.st, file), _with_credentials(rec)))
        return chains, ccd, differs

    def _verdicts_in(self, run: "_Recheck", due: list, outcome: Outcome) -> None:
        """A batch's verdicts are in (on the loop): those the new config refuses are
        disconnected, the others take its settings -- if still here, and only if no later
        reload took over (its own pass checks them again, under its config) -- then the pass
        goes on. A key begun meanwhile is told to end under the new checks as well."""
        if run.gen != self._recheck_gen:
            return
        try:
            chains, ccd, differs = outcome.value()
            if len(chains) != len(due) or len(differs) != len(due):
                raise RuntimeError(f"{len(chains)} verdicts for {len(due)} clients")
        except Exception as e:  # noqa: BLE001 - our bug in the worker: fail closed, as a check's bug
            self.gw.faults.internal_exc("a reload's check of its clients in its worker", e)
            chains, ccd, differs = [], {}, []
        fresh = run.fresh
        for i, (rec, _cert, _chain, name, _given) in enumerate(due):
            if not rec.alive:
                continue                    # left (or was replaced) while it was checked
            try:
                if i >= len(chains):
                    self._recheck_bug(rec)
                    continue
                why, digests = chains[i]
                s = rec.session
                if why is None and fresh.require_ekm and s.established and not s.ekm:
                    # force-tls-key-material-export added: such a client would be refused now.
                    why = "its data-channel keys are not derived with TLS-EKM (force-tls-key-material-export)"
                if why is None:
                    why = run.refused.get(id(rec))  # duplicate-cn off, max-clients lowered (reload_admission.py)
                if why is None and name is not None and run.ccd is not None:
                    # 2.6's SIGHUP has every client connect again, through its ccd file as it is
                    # now: one written `disable`, or removed under ccd-exclusive, is not kept.
                    why = ccd.get(name, _CCD_UNCHECKED)
                    if why is _CCD_UNCHECKED:
                        self.gw.d.end(rec, "internal error (its check at a reload)")
                        continue
                if why is not None:
                    log.warning("%s/%s: %s: disconnected", rec.common_name, fmt_addr(rec.addr), why)
                    self._reload_out(rec, why)
                    run.dropped += 1
                    continue
                verdict = differs[i]
                if isinstance(verdict, Given):
                    verdict = self._given_since(rec, verdict)
                if s.established:
                    # (its ccd's cipher lines as given: a changed file restarts it anyway, `verdict`;
                    # then its client-connect output / client-auth block's, as admitted: no reload
                    # runs those again -- review48f: left out, a client given its cipher there was
                    # told RESTART at every reload)
                    lines = (getattr(rec.given, "ccd", None), getattr(self.info.get(id(rec)), "connect_ccd", None))
                    verdict = cipher_dropped(s.cipher, fresh, s.peer_info, lines, s.peer_occ_cipher) \
                        or tls_version_out(self._tls_version(s), run.tls) \
                        or verdict
                if id(rec) in run.unpushed and run.st is not None:
                    # Before its push when the reload applied: past its handshake (and login) under
                    # the old config's admission checks, which its push records as the new ones
                    # (reload44) -- also when that push came before its turn here: the pass takes
                    # a batch and a worker round trip at a time (review45b: kept, a wrong password).
                    verdict = tightened(run.old_admission, run.st.admission,
                                        credentials=_with_credentials(rec)) or verdict
                if verdict is not None:
                    self._restart_for_reload(run, rec, verdict)
                    continue
                self._restart_held.pop(id(rec), None)   # the same as this reload gives: kept
                rec.reload_pending = False
                # Kept: its renegotiations are checked under the new config (CA store, CRL,
                # checks), not the one it started under -- a reload that added crl-verify then a
                # revocation in it without a reload left a kept client's renegotiation unchecked.
                self._keys_under(run, s)
                s.cfg.tls, s.tls_context = run.tls, run.ctx
                s.chain_verified_again(digests)
            except Exception:  # noqa: BLE001 - our bug in its turn: that client ends, the pass goes on
                self._recheck_bug(rec)
        self._recheck_next(run)

    @staticmethod
    def _tls_version(s) -> str | None:
        """The TLS version of the session's newest key that has a TLS endpoint (a retired one has
        none), e.g. `TLSv1.2`; None without one."""
        for ks in sorted(s.keys.values(), key=lambda k: k.key_id, reverse=True):
            if ks.tls is not None and ks.tls.handshake_done:
                return ks.tls.version
        return None

    @staticmethod
    def _given_since(rec, now: "Given") -> str | None:
        """A client the pass found with no options given yet (`now`: what the new config gives
        it): given some since its turn (compared), or waiting on a large ccd file's read that
        may have begun before the reload -- its answer, the file as it was, would be what it is
        given (review44b: such a client came in with the old file's ifconfig-push and kept it);
        else none yet, and it reads the new config at its push."""
        if rec.given is not None:
            return what_differs(rec.given, now, _with_credentials(rec))
        if rec.ccd_wait is not None:
            return "its client-config-dir file was being read at the reload"
        return None

    def _reload_out(self, rec, why: str) -> None:
        """A client a reload's pass does not keep. Established: ended with its exit notification,
        as before. Half-way through its connect (TLS up, no tunnel yet: no data keys for that
        notification): told RESTART over the control channel, as 2.6's SIGHUP tells every
        instance with `explicit-exit-notify` (multi_push_restart_schedule_exit); its reconnect then
        meets the new config (AUTH_FAILED for a `disable`). Told nothing, Debian's client waited
        ~60 s for a push reply first (atk41)."""
        if id(rec) in self.killing:
            return                          # told RESTART/HALT already (client-kill): it ends so
        if rec.session.established or not self._tell_then_end(rec, "RESTART", why):
            self._kick(rec, why)

    def _restart_for_reload(self, run: "_Recheck", rec, why: str) -> None:
        """A kept client to whom the reload's config would give other options (given.py `why`):
        told RESTART so it reconnects at once and gets them, as every client does at 2.6's
        SIGHUP -- unless a reload restarted it (its name from its address) less than
        RELOAD_RESTART_HOLDOFF seconds ago: then at that time (_restart_held_due), if no later
        reload decided otherwise. Never held off: an admission check the client never went
        through (given.py Tightened: auth-user-pass-verify added, ...), which may refuse it -- held,
        it would keep its tunnel for up to 30 s past a check meant to keep it out (reload44)."""
        now = self.gw.clock()
        key = self._holdoff_key(rec)
        last = self._reload_restarted.get(key)
        if isinstance(why, Tightened):
            last = None
        if last is not None and last[1] != run.gen and now < last[0] + RELOAD_RESTART_HOLDOFF:
            due = last[0] + RELOAD_RESTART_HOLDOFF
            if id(rec) not in self._restart_held:
                log.warning("%s/%s: %s; restarted by a reload %.0f s ago: restarts in %.0f s",
                            rec.common_name, fmt_addr(rec.addr), why, now - last[0], due - now)
            self._restart_held[id(rec)] = (rec, why, run.gen, due)
            if self._held_armed is None or due < self._held_armed:
                self._arm_restart_held()    # (not a min over every held one per client: 1,000 held at once)
            return
        self._restart_held.pop(id(rec), None)
        self._note_reload_restart(key, now, run.gen)
        log.warning("%s/%s: %s: told RESTART to reconnect for it", rec.common_name, fmt_addr(rec.addr), why)
        self._restart_now(rec, why)

    def _restart_now(self, rec, why: str) -> None:
        if id(rec) in self.killing:
            return                          # told RESTART/HALT already (client-kill): it ends so
        rec.reload_restart = True
        if not self._tell_then_end(rec, "RESTART", f"restarted by a reload: {why}"):
            self._kick(rec, f"restarted by a reload: {why}")

    def _holdoff_key(self, rec) -> tuple:
        """Whose reload restarts the hold-off counts together: the name its ccd file is found by
        (_ccd_name: a restart in place before its push goes by its connection's name, not None)
        and its real IP."""
        return self._ccd_name(rec), self._real(rec)[0]

    def _arm_restart_held(self) -> None:
        if self._restart_held:
            self._held_armed = min(e[3] for e in self._restart_held.values())
            self.gw.pump.timers.arm("reload-restart-held", self._held_armed, self._restart_held_due)
        else:
            self._held_armed = None
            self.gw.pump.timers.cancel("reload-restart-held")

    def _restart_held_due(self) -> None:
        """Held-off reload restarts whose time has come: made now, unless the client left or a
        later reload's pass has it (that pass decides anew)."""
        now = self.gw.clock()
        for k, (rec, why, gen, due) in list(self._restart_held.items()):
            if due > now:
                continue
            del self._restart_held[k]
            if rec.alive and gen == self._recheck_gen:
                self._note_reload_restart(self._holdoff_key(rec), now, gen)
                log.warning("%s/%s: %s: told RESTART to reconnect for it (held off until now)",
                            rec.common_name, fmt_addr(rec.addr), why)
                self._restart_now(rec, why)
        self._arm_restart_held()

    def _note_reload_restart(self, key: tuple, now: float, gen: int) -> None:
        """A reload restart made now for `key` (common name, real IP): counted for the hold-off,
        and forgotten once that is over (_forget_old_restarts' timer)."""
        self._reload_restarted[key] = (now, gen)
        if len(self._reload_restarted) == 1:
            self._arm_forget_restarts()

    def _arm_forget_restarts(self) -> None:
        if self._reload_restarted:
            first = min(t for t, _g in self._reload_restarted.values())
            self.gw.pump.timers.arm("reload-restarted-expire", first + RELOAD_RESTART_HOLDOFF,
                                    self._forget_old_restarts)
        else:
            self.gw.pump.timers.cancel("reload-restarted-expire")

    def _forget_old_restarts(self) -> None:
        """At each reload, and by a timer when the oldest one's hold-off is over: reload restarts
        older than the hold-off no longer count (the map stays as small as the clients restarted
        in the last RELOAD_RESTART_HOLDOFF seconds, and is empty once they are over -- it kept
        them until the next reload before, review44d)."""
        now = self.gw.clock()
        # `t + HOLDOFF <= now`, the timer's own sum: `now - t >= HOLDOFF` is false at the timer's
        # instant for some t (1038.1 - 1008.1 < 30 in floating point), and the timer, armed again
        # for that instant, spun the loop (fuzz44).
        for k in [k for k, (t, _g) in self._reload_restarted.items() if t + RELOAD_RESTART_HOLDOFF <= now]:
            del self._reload_restarted[k]
        self._arm_forget_restarts()

    def _recheck_next(self, run: "_Recheck") -> None:
        """The next batch of the pass at the next wake-up, or its end logged."""
        gw = self.gw
        if run.todo:
            gw.pump.timers.arm("reload-recheck", gw.clock(), lambda: self._recheck(run))
            return
        # Kept: those it found and still here -- not the clients that came during the pass
        # (under the new config from the start).
        # Those told RESTART for their new options are not "kept" (they reconnect), and said apart.
        restarted = sum(1 for r in run.found if r.reload_restart)
        log.warning("reload: config %s re-read; %d clients kept, %d revoked ones disconnected%s",
                    run.path, sum(1 for r in run.found if r.alive and not r.reload_restart), run.dropped,
                    f", {restarted} told RESTART for their new options" if restarted else "")

    def _check_kept_v2_keys(self, old, new) -> None:
        """A reload that adds or changes tls-crypt-v2-verify: the command runs on a client's key
        at its first packet, and OpenVPN's SIGHUP has every client connect again, through it. The
        clients we keep are run through it now, off the loop, and those it refuses are
        disconnected (an operator revoking a key that way expects it gone). Not capped by the
        queue's room for new handshakes: their number is the server's own clients."""
        if not new.tls_crypt_v2_verify or new.tls_crypt_v2_verify == old.tls_crypt_v2_verify or self.verify is None:
            return
        kept = [rec for rec in self.gw.d.clients if rec.v2_key is not None]
        for rec in kept:
            self.verify.submit_metadata(("v2kept", rec), self._real(rec)[0], list(new.tls_crypt_v2_verify),
                                        *rec.v2_key, capped=False)
        if kept:
            log.warning("reload: tls-crypt-v2-verify: running it on the keys of %d connected client(s)", len(kept))

    # ---------------------------------------------------------------- engine events
    def created(self, rec, restarts=None) -> None:
        """A client record was just made: it takes the next client ID now, and its connected-since
        is now, as OpenVPN 2.6 numbers and dates its instances at multi_create_instance (after
        the stateless cookie exchange): a handshake that fails later has used up its number, so
        >CLIENT:CONNECT, client-kill and client-auth see the numbers 2.6 gives in the same
        sequence, and the status lists the handshake meanwhile (rows).
        Two cases keep a number given before, as 2.6 keeps its instance: a TCP connection's
        session takes what the connection took at accept (stream_accepted), and a restart from
        a client's address (`restarts`: that client's record) takes that client's ID and
        connected-since (seen in the lab: one row, the same ID, >CLIENT:REAUTH for its login)."""
        old = self.info.get(id(restarts)) if restarts is not None else None
        taken = self.streams.pop(rec.addr, None) if getattr(rec, "tcp", False) else None
        if old is not None:
            inf = self.info[id(rec)] = ClientInfo(old.cid, old.since, rec)
            inf.restart = True
            inf.restarts = restarts
            inf.continues = old.established and restarts.restart_keeps_options
            inf.connect_ccd = old.connect_ccd
            inf.announced = old.announced
            old.heir = rec
        elif taken is not None:
            self.info[id(rec)] = ClientInfo(taken[0], taken[1], rec)
        else:
            self._info(rec)

    def stream_accepted(self, key, peer_id: int) -> None:
        """TCP: a connection was accepted. As OpenVPN 2.6 (multi_create_instance at accept) it
        takes the next client ID and is listed from now on, UNDEF until its handshake says more,
        even if it never sends a byte (seen in the lab). The number of such connections is
        bounded by the server's connection limits (server.py _on_accept)."""
        self.streams[key] = (self.next_cid, self.wall(), peer_id)
        self.next_cid += 1

    def stream_gone(self, key) -> None:
        """TCP: a connection closed (or handed to port-share) before its session was made."""
        self.streams.pop(key, None)

    def _info(self, rec) -> ClientInfo:
        inf = self.info.get(id(rec))
        if inf is None:
            inf = self.info[id(rec)] = ClientInfo(self.next_cid, self.wall(), rec)
            self.next_cid += 1
        return inf

    def on_event(self, rec, e) -> None:
        """One engine event; a bug of ours here must not keep the pump from handling the event
        itself (closing a TCP connection, a password check), so it is contained and counted."""
        try:
            self._on_event(rec, e)
        except Exception:  # noqa: BLE001
            self.gw.faults.internal("operations (management, scripts, status)")
            if isinstance(e, ev.ConnectRequested):
                self.gw.d.connect_result(rec, False, self.gw.clock(), reason="internal error")

    def _on_event(self, rec, e) -> None:
        if isinstance(e, ev.AuthRequested):
            self._info(rec).asked_username = e.username
        if isinstance(e, (ev.TlsVerifyRequested, ev.V2VerifyRequested)):
            self._run_verify(rec, e)
        elif isinstance(e, ev.ConnectRequested):
            inf = self._info(rec)
            if inf.continues:
                # 2.6's reconnect of an established instance skips the connect step (its state
                # goes back only to CAS_RECONNECT_PENDING): the connection's options as admitted.
                self._admit(rec, inf, inf.connect_ccd)
            else:
                self._run_connect(rec, inf)
        elif isinstance(e, ev.TunnelUp):
            inf = self._info(rec)
            went_on, inf.established = inf.established or inf.continues, True
            self.session_limit.started(rec)
            if self.pool_memory is not None:
                self.pool_memory.note(rec.common_name, rec.vaddr, rec.vaddr6)
            if self.mgmt is not None and not went_on:
                if inf.announced:
                    told = inf.told_addresses
                    self.mgmt.notify(told if told is not None else self._address_lines(rec, inf.cid))
                self.mgmt.notify_env(EnvBlock((f">CLIENT:ESTABLISHED,{inf.cid}",), self._client_env(rec, inf)))
        elif isinstance(e, ev.KeyRenegotiated):
            if id(rec) in self.info:
                self.traffic.sample(rec)
        elif isinstance(e, ev.CrResponse):
            self._cr_response(rec, e)
        elif isinstance(e, ev.SessionClosed):
            inf = self.info.pop(id(rec), None)
            self.inactive.pop(id(rec), None)
            self.session_limit.gone(rec)
            heir = inf.heir if inf is not None and inf.heir is not None and inf.heir.alive else None
            if heir is not None and inf.established and id(heir) in self.info and self.info[id(heir)].continues:
                self.learn.hand_over(rec, heir)     # 2.6's routes stay with the connection going on
            else:
                self.learn.left(rec)
            if self.auth_block_reader is not None:
                self.auth_block_reader.drop(rec)    # its client-auth block, if still waiting: not parsed
            if self.client_auth is not None:
                # (its client ID's KID count goes on with the restart that takes its place, and
                # with the client a failed restart leaves behind: a count dropped there numbered
                # that client's next login 1 again, a (CID, KID) already used)
                shared = heir is not None or (inf is not None and inf.restarts is not None and inf.restarts.alive)
                self.client_auth.forget(rec, inf.cid if inf is not None and not shared else None)
            if inf is None:
                return
            self.traffic.forget(rec)
            r, w = self.link.of(rec)
            if heir is not None and id(heir) in self.info:
                # 2.6's counters are the instance's: the restart's row goes on from these.
                self.link.inherit(heir, rec)
            self.link.forget(rec)
            if not inf.established:
                return
            if heir is not None and id(heir) in self.info and self.info[id(heir)].continues:
                # Its restart goes on as this connection (one 2.6 instance): the end is its end,
                # told once, whenever it comes -- also if that restart fails before it is in.
                self.info[id(heir)].established = True
                return
            extra = {"bytes_received": str(r), "bytes_sent": str(w),
                     "time_duration": str(int(self.wall() - inf.since))}
            who = rec
            if inf.continues and inf.restarts is not None and not rec.session.established:
                # A restart that never got in, ending the connection it continued (its old
                # session gone first): told as that connection -- its common name, address and
                # certificate, as 2.6's one instance keeps them; this session had none of its
                # own yet (common_name was empty in client-disconnect and >CLIENT:DISCONNECT).
                who = inf.restarts
            if self.mgmt is not None and inf.announced:
                # As 2.6's management_notify_client_close: only for a connection whose login the
                # management client was asked about (DAF_INITIAL_AUTH: management-client-auth);
                # without it 2.6 says >CLIENT:ESTABLISHED and never >CLIENT:DISCONNECT.
                self.mgmt.notify_env(EnvBlock((f">CLIENT:DISCONNECT,{inf.cid}",), self._client_env(who, inf, extra)))
            o = self.gw.opts
            if o.client_disconnect and self.scripts is not None:
                env = self.env(who, inf, "client-disconnect")
                env.update(extra)
                why = self.scripts.submit(("disconnect", None), list(o.client_disconnect), env, False)
                if why is not None:
                    log.warning("client-disconnect for %s not run: %s", rec.common_name, why)

    def _cr_response(self, rec, e) -> None:
        """A client's answer to a challenge (CR_RESPONSE): to the management client deciding its
        login, as OpenVPN 2.6's >CLIENT:CR_RESPONSE,CID,KID,<response> with the client's
        environment, and to the client-crresponse command. Only while a login of that key waits
        for a verdict: otherwise nobody asked and it is counted, not told (a client's message
        must not make us write to tools, or run commands, unasked)."""
        self._cr_response_command(rec, e)
        ca = self.client_auth
        w = None if ca is None else next((x for x in ca.by_ckid.values() if x.rec is rec and x.key_id == e.key_id),
                                         None)
        if w is None or self.mgmt is None:
            if not (self.gw.opts.client_crresponse and self._deferred_login(rec, e.key_id)):
                self.gw.faults.count("CR_RESPONSE with no login waiting for it")
            return
        # The engine escaped control characters already; one printable line, whatever came.
        text = "".join(ch if " " <= ch <= "~" else "_" for ch in e.response)
        log.info("%s: CR response was sent by client ('%s')", rec.common_name, text[:64])
        env = self.user_pass_env(rec)           # the login's, as it was announced (no password)
        self.mgmt.notify_env(EnvBlock((f">CLIENT:CR_RESPONSE,{w.cid},{w.kid},{text}",), env,
                                      peer_info=peer_info_lines(rec.session.peer_info)))

    def _deferred_login(self, rec, key_id: int):
        """The deferred auth-user-pass-verify check (key, held, verdict, ...) of `rec`'s key, if one waits."""
        auth = self.gw.auth
        if auth is None:
            return None
        return next((d for d in auth.deferred if d[0][0] is rec and d[0][1] == key_id), None)

    def _cr_response_command(self, rec, e) -> None:
        """client-crresponse, as OpenVPN 2.6 runs it (ssl_verify.c verify_crresponse_script): the
        answer in a file given as the last argument (it may be a second factor: not in the
        environment), the login's environment with its auth_control_file, into which the command
        writes the verdict. Its non-zero exit refuses the login. Off the loop, as every command,
        one at a time per login and a few at once in all (gateway/crresponse.py)."""
        o = self.gw.opts
        if not o.client_crresponse or self.scripts is None or self._deferred_login(rec, e.key_id) is None:
            return
        item = self.crr_runs.offer((id(rec), e.key_id), (rec, e.key_id, e.response))
        if item is None:
            self.gw.faults.count("CR_RESPONSE waiting for a client-crresponse slot")
            return
        self._start_cr_response(*item)

    def _cr_response_ended(self, rec, key_id: int) -> None:
        """A client-crresponse run ended (or never started): the waiting answers it let in start."""
        for item in self.crr_runs.done((id(rec), key_id), lambda it: it[0].alive and
                                       self._deferred_login(it[0], it[1]) is not None):
            self._start_cr_response(*item)

    def _start_cr_response(self, rec, key_id: int, response: str) -> None:
        o = self.gw.opts
        d = self._deferred_login(rec, key_id) if o.client_crresponse and self.scripts is not None else None
        if d is None:
            self._cr_response_ended(rec, key_id)
            return
        try:
            why = self._submit_cr_response(rec, d, response)
        except BaseException:
            self._cr_response_ended(rec, key_id)     # (our bug, counted by on_event: no slot kept for it)
            raise
        if why is not None:
            log.warning("%s: client-crresponse not run: %s", rec.common_name, why)
            self._cr_response_ended(rec, key_id)

    def _submit_cr_response(self, rec, d, response: str) -> str | None:
        o = self.gw.opts
        (_rec, key_id, check), _held, v = d[0], d[1], d[2]
        # The login's environment as OpenVPN 2.6 has it then: the client's address as trusted, the
        # username being checked, the deferred files (auth_pending_file already read and removed).
        env = self.env(rec, self._info(rec), "client-crresponse")
        env["common_name"] = rec.session.peer_common_name or ""
        ks = rec.session.keys.get(key_id)
        km = ks.pending_auth if ks is not None else None
        env.update({"username": remap_name(km.username) if km is not None else "",
                    "auth_control_file": v.control or "", "auth_pending_file": v.pending_file or "",
                    "auth_failed_reason_file": v.reason_file or ""})
        assert self.scripts is not None
        return self.scripts.submit(("crresponse", (rec, key_id, check)), list(o.client_crresponse), env, False,
                                   arg_text=response.encode())

    def _run_connect(self, rec, inf: ClientInfo) -> None:
        o = self.gw.opts
        if self.scripts is None or not o.client_connect:
            if not inf.mgmt_config:
                self._admit(rec, inf, None)
                return
            text = "\n".join(inf.mgmt_config) + "\n"
            inf.mgmt_config = None              # (its one use: held by the parse from here on)
            if len(text) <= AUTH_BLOCK_INLINE_MAX or self.reload_inline:
                self._auth_block_parsed(rec, inf, _parsed_auth_block(text))
                return
            # A large block: parsed by a worker while the client waits for this verdict, as it
            # waits for a client-connect script's (2.6 parses it on its one thread; ours stalled
            # every client's packets for as long: compat47). Bounded (auth_blocks.py): past the
            # bound this login is refused for now.
            if self.auth_block_reader is None:
                self.auth_block_reader = AuthBlockParser(_parsed_auth_block)
                self.gw.pump.watch(self.auth_block_reader, self.auth_block_reader.drain)
            if not self.auth_block_reader.submit((inf.cid, inf.mgmt_kid), rec, text,
                                                 lambda got: self._auth_block_parsed(rec, inf, got)):
                self.gw.faults.count(AUTH_BLOCKS_REFUSED)
                self.gw.d.connect_result(rec, False, self.gw.clock(), temporary=True,
                                         reason="client-auth: its block cannot be parsed now (too many waiting)")
            return
        # client-auth's lines go after the script's (2.6: multi_client_connect_mda last), parsed
        # with them in the script's worker.
        after = "\n".join(inf.mgmt_config) + "\n" if inf.mgmt_config else ""
        inf.mgmt_config = None
        why = self.scripts.submit(("connect", rec), list(o.client_connect), self.env(rec, inf, "client-connect"), True,
                                  after=after)
        if why is not None:
            self.gw.d.connect_result(rec, False, self.gw.clock(), reason=f"client-connect not run: {why}")

    # ---------------------------------------------------------------- tls-verify, tls-crypt-v2-verify
    def _run_verify(self, rec, e) -> None:
        """Hand a held handshake's command to the runner; no room (or no command any more, after
        a reload) refuses it at once."""
        o, d, now = self.gw.opts, self.gw.d, self.gw.clock()
        ip, port = self._real(rec)
        if isinstance(e, ev.TlsVerifyRequested):
            why = "no tls-verify command" if self.verify is None or not o.tls_verify else \
                self.verify.submit_chain(("tls", rec, e.key_id, e.check), ip, list(o.tls_verify), e.chain,
                                         self.verify_env(ip, port), name=e.common_name, track=o.x509_track)
            if why is not None:
                # Counted, not logged one by one: a flood of handshakes is what fills the queue.
                self.gw.faults.count(f"TLS handshake refused: tls-verify not run: {why}")
                # Unannounced: told at once, the peer would be back at once (give_verdict).
                d.tls_verify_result(rec, e.key_id, False, now, check=e.check, tell=False)
            return
        why = "no tls-crypt-v2-verify command" if self.verify is None or not o.tls_crypt_v2_verify else \
            self.verify.submit_metadata(("v2", rec), ip, list(o.tls_crypt_v2_verify), e.metadata_type, e.metadata,
                                        identity=identity_of_v2_key(e.key_digest) if e.key_digest else None)
        if why is not None:
            self.gw.faults.count(f"client refused: tls-crypt-v2-verify not run: {why}")
            d.v2_verify_result(rec, False, now, why=f"not run: {why}")

    def verify_env(self, ip: str, port: int) -> dict[str, str]:
        """tls-verify's environment before the certificates' variables: the peer's address as
        OpenVPN's setenv_untrusted sets it, and the server's own variables."""
        e = {"untrusted_port": str(port), ("untrusted_ip6" if ":" in ip else "untrusted_ip"): ip}
        return with_globals(e, self._server_env(), self.gw.opts.setenv)

    def _verify_done(self, key, ok: bool, reason: str) -> None:
        d, now = self.gw.d, self.gw.clock()
        if key[0] == "tls":
            _, rec, key_id, check = key
            if not ok and rec.alive:
                log.warning("%s: %s", fmt_addr(rec.addr), reason)
            d.tls_verify_result(rec, key_id, ok, now, check=check)
        elif key[0] == "v2kept":
            rec = key[1]
            if not ok and rec.alive:
                why = f"tls-crypt-v2-verify refused its key at a reload: {reason}"
                log.warning("%s/%s: %s: disconnected", rec.common_name, fmt_addr(rec.addr), why)
                self._kick(rec, why)
        else:
            d.v2_verify_result(key[1], ok, now, why=reason)

    def after_wake(self) -> None:
        for rec, _ in list(self.killing.values()):
            self._end_kill(rec)
        if self.reload_reader is not None:
            for then, outcome in self.reload_reader.take():
                try:
                    then(outcome)
                except Exception:  # noqa: BLE001
                    self.gw.faults.internal("a reload")
        if self.auth_block_reader is not None:
            for then, got in self.auth_block_reader.take():
                try:
                    then(got)
                except Exception:  # noqa: BLE001
                    self.gw.faults.internal("a client-auth block's parse")
        if self.verify is not None:
            for key, ok, reason in self.verify.take_results():
                try:
                    self._verify_done(key, ok, reason)
                except Exception:  # noqa: BLE001
                    self.gw.faults.internal("a verify command's verdict")
        if self.scripts is None:
            return
        for result in self.scripts.take_results():
            try:
                self._script_done(*result)
            except Exception:  # noqa: BLE001
                self.gw.faults.internal("a script's verdict")

    def _auth_block_parsed(self, rec, inf: ClientInfo, got) -> None:
        """A client-auth block's lines are read (`got`: its CcdOptions, or the ConfigError
        that refuses the client): the client let in with them, or refused -- if still waiting."""
        if not rec.alive or rec.connect_state != "pending":
            return                              # gone (or decided otherwise) while its block was parsed
        if isinstance(got, Exception):     # a ConfigError (or, our bug, anything the parse raised)
            self.gw.d.connect_result(rec, False, self.gw.clock(), reason=f"client-auth gave options we cannot use: {got}")
            return
        if got.disable:
            self.gw.d.connect_result(rec, False, self.gw.clock(), reason="client-auth: disable")
            return
        self._admit(rec, inf, got)

    def _admit(self, rec, inf: ClientInfo, ccd) -> None:
        """client-connect (or client-auth, or nothing) let `rec` in: its options applied, then
        learn-address's adds for its addresses (gateway/learn.py) before its push; at once
        without learn-address."""
        o, d = self.gw.opts, self.gw.d
        inf.connect_ccd = ccd
        if not o.learn_address or self.scripts is None:
            d.connect_result(rec, True, self.gw.clock(), ccd=ccd)
            return
        if not rec.alive or rec.connect_state != "pending":
            return
        if ccd is not None and (why := d.connect_options(rec, ccd)) is not None:
            d.connect_result(rec, False, self.gw.clock(), reason=why)
            return
        if not self.learn.admit(rec, o.learn_address, self.env(rec, inf, "learn-address")):
            d.connect_result(rec, True, self.gw.clock())

    def admitted(self, rec, refused: list) -> None:
        """learn-address's adds for `rec` are all in: those refused are not routed to it; the
        client is let in all the same (its push sent), as with OpenVPN."""
        inf = self.info.get(id(rec))
        if inf is not None:
            # 2.6 tells an address whose learn found an owner: not a refused add, but a refused
            # update (the route stays the other client's) all the same (multi_learn_in_addr_t).
            gone = {key for key, prev in refused if prev is None or not prev.alive}
            inf.told_addresses = self._address_lines(rec, inf.cid, gone)
        for key, prev in refused:
            self.gw.d.unlearn(rec, key, prev)
        self.gw.d.connect_result(rec, True, self.gw.clock())

    def _address_lines(self, rec, cid: int, leave_out: set = frozenset()) -> list[str]:
        """>CLIENT:ADDRESS,CID,ADDR,PRIMARY for each address routed to `rec` (but those whose
        key is in `leave_out`), as OpenVPN 2.6 tells them (manage.c management_learn_addr,
        called from multi_client_connect_late_setup just before >CLIENT:ESTABLISHED): in
        learn-address's order, the client's own addresses primary (1), its iroutes not (0), an
        IPv4 iroute with a dotted mask (MAPF_SUBNET; /255.255.255.255 for a host), an IPv6 one
        with its bits.
        None with dev tap (2.6 learns MACs as frames come, and tells none of them)."""
        out = []
        for text, key in self.gw.d.learnable(rec):
            if key in leave_out:
                continue
            if isinstance(key, ipaddress.IPv4Network):
                text = f"{key.network_address}/{key.netmask}"
            out.append(f">CLIENT:ADDRESS,{cid},{text},{int(isinstance(key, str))}")
        return out

    def admit_failed(self, rec, reason: str) -> None:
        log.warning("%s/%s: refused for now: %s", rec.common_name, fmt_addr(rec.addr), reason)
        self.gw.d.connect_result(rec, False, self.gw.clock(), reason=reason)

    def _script_done(self, key, ok: bool, text, reason: str) -> None:
        kind, rec = key
        if kind == "learn":
            self.learn.done(rec, ok, reason)
            return
        if kind == "crresponse":
            rec, key_id, check = rec
            self._cr_response_ended(rec, key_id)
            if not ok and rec.alive:
                log.warning("%s: client-crresponse: %s", rec.common_name, reason)
                self.gw.d.auth_result(rec, key_id, False, self.gw.clock(), why=f"client-crresponse: {reason}",
                                      check=check)
            return
        if kind != "connect":
            if not ok:
                log.warning("client-disconnect: %s", reason)
            return
        ccd = None
        inf = self.info.get(id(rec))
        # The options file, then client-auth's lines (2.6's order), parsed in the worker.
        out: ConnectOutput | None = text
        if ok and out is not None and out.text.strip():
            if out.error is not None:
                ok, reason = False, f"client-connect wrote options we cannot use: {out.error}"
            ccd = out.options
        if ok and ccd is not None and ccd.disable:
            ok, reason = False, "client-connect: disable"
        if not ok:
            log.warning("%s/%s: refused: %s", rec.common_name, fmt_addr(rec.addr), reason)
            self.gw.d.connect_result(rec, ok, self.gw.clock(), ccd=ccd, reason=reason)
            return
        self._admit(rec, inf if inf is not None else self._info(rec), ccd)

    # ---------------------------------------------------------------- environment
    def env(self, rec, inf: ClientInfo, script_type: str) -> dict[str, str]:
        """OpenVPN's client environment, in the order OpenVPN 2.6 prints it (>CLIENT:ENV lines)."""
        o = self.gw.opts
        ip, port = self._real(rec)
        s = rec.session
        now = self.wall()
        pool = self.gw.st.pool
        v6 = ":" in ip
        t = inf.since if inf.established else now
        e: dict[str, str] = {"n_clients": str(len(self.gw.d.clients)), "time_unix": str(int(t)),
                             "time_ascii": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))}
        if rec.vaddr6:
            e["ifconfig_pool_remote_ip6"] = rec.vaddr6
        if rec.vaddr and pool is not None:
            # As 2.6's multi_set_virtual_addr_env: the second address pushed with the client's.
            if pool.topology == "subnet" or self.gw.opts.dev_type == "tap":
                if pool.push_mask:
                    e["ifconfig_pool_netmask"] = pool.push_mask
            elif (peer := pool.peer(rec.vaddr)) is not None:
                e["ifconfig_pool_local_ip"] = peer
        if rec.vaddr:
            e["ifconfig_pool_remote_ip"] = rec.vaddr
        if s.peer_username:
            e["username"] = s.peer_username
        e["trusted_port"] = str(port)
        e["trusted_ip6" if v6 else "trusted_ip"] = ip
        e["common_name"] = rec.common_name or ""
        e.update(peer_info_env(s.peer_info))
        e["untrusted_port"] = str(port)
        e["untrusted_ip6" if v6 else "untrusted_ip"] = ip
        cert = rec.session.peer_certificate
        if cert is not None:
            e.update(self._chain_env(rec, inf, cert))
        e = with_globals(e, self._server_env(), o.setenv)
        if script_type:
            e["script_type"] = script_type
        return e

    def _chain_env(self, rec, inf: ClientInfo, cert) -> dict[str, str]:
        """The variables of each certificate of the verified chain, the peer's (depth 0) first, as
        OpenVPN sets them; read once per session and certificate (a renegotiation's new one, or a
        reload's other x509-track lines, read anew). Why: the environment is made on the loop up
        to eight times per client (its login, client-connect, learn-address, the management
        notifications, client-disconnect), and a certificate of 8,800 subject attributes cost
        ~60-80 ms each time: ~0.3 s of every client's loop per connection of such a client."""
        track = self.gw.opts.x509_track
        # An extra certificate cryptography cannot read: depth 0 only (counted, said at WARNING).
        unreadable: dict[str, int] = {}
        chain = chain_or_depth0(lambda: rec.session.peer_chain, unreadable)
        if unreadable:
            self.gw.faults.count_warn(CHAIN_UNREADABLE, CHAIN_UNREADABLE_SAID)
        got = inf.chain_env
        if (got is not None and got[0] is cert and got[2] == track and len(got[1]) == len(chain)
                and all(a is b for a, b in zip(got[1], chain))):
            return got[3]
        out: dict[str, str] = {}
        for depth, c in enumerate([cert, *chain]):
            out.update(cert_env(c, depth, track))
        inf.chain_env = (cert, chain, track, out)
        return out

    def _server_env(self) -> dict[str, str]:
        """The server's own variables, in every script's environment (OpenVPN's global env set;
        the config's setenv variables are added by with_globals)."""
        o, pool = self.gw.opts, self.gw.st.pool
        e = {"remote_port_1": str(o.port), "local_port_1": str(o.local_port),
             "proto_1": o.proto + ("6" if o.proto_family == "6" else ""), "daemon_pid": str(os.getpid()),
             "daemon_start_time": str(int(self.started)), "daemon_log_redirect": "0", "daemon": "0",
             "verb": str(o.verb), "config": o.path}
        a = server_addressing(o)
        if a is not None and a.local is not None:
            # 2.6's do_ifconfig: ifconfig_netmask in subnet, ifconfig_remote with a peer
            e["ifconfig_local"] = a.local
            e["ifconfig_netmask" if a.topology == "subnet" else "ifconfig_remote"] = a.second
        elif pool is not None and pool.server_ip:
            e["ifconfig_local"] = pool.server_ip
            e["ifconfig_netmask"] = str(pool.net.netmask)
        e.update(self._server_tunnel_env())
        e["script_context"] = "init"
        e["tun_mtu"] = str(o.tun_mtu)
        e["dev"] = self.gw.tun.name if self.gw.tun is not None else o.dev
        e["dev_type"] = "tun"
        e["redirect_gateway"] = "0"
        return e

    def _server_tunnel_env(self) -> dict[str, str]:
        """The server's IPv6 address and its own `route`/`route-ipv6` lines, as 2.6's do_ifconfig
        and do_route leave them in its set for the plugin's UP call and the >UPDOWN lines (Debian's
        server: tests/interop/test_down_root_vs_openvpn.py): route_vpn_gateway the pool's .2 (the
        `server` line's route-gateway), route_net_gateway the host's default gateway at start."""
        o, pool, pool6 = self.gw.opts, self.gw.st.pool, self.gw.st.pool6
        e: dict[str, str] = {}
        v6_remote = None
        if o.ifconfig_ipv6 is not None:
            local6, bits6, v6_remote = o.ifconfig_ipv6
        elif pool6 is not None:
            local6, bits6, v6_remote = pool6.server_ip, pool6.net.prefixlen, str(pool6.net.network_address + 2)
        if v6_remote is not None:
            e.update({"ifconfig_ipv6_local": local6, "ifconfig_ipv6_netbits": str(bits6),
                      "ifconfig_ipv6_remote": v6_remote})
        if o.route or o.route_ipv6:
            if self._net_gateway is None:
                from .updown import host_net_gateway
                self._net_gateway = host_net_gateway(self.gw.tun.name if self.gw.tun is not None else None)
            a = server_addressing(o)
            vpn_gw = a.vpn_gateway if a is not None else str(pool.net.network_address + 2) if pool is not None else None
            e.update(route_env(o.route, o.route_ipv6, vpn_gw, self._net_gateway, "", o.route_metric, v6_remote))
        return e

    def up_down_env(self, plugin: bool = False) -> dict[str, str]:
        """The server's up/down environment, as management-up-down lists it (the newest first, the
        settings last in the order they were set: gateway/updown_env.py says why); `plugin`: the
        down-root command's, without redirect_gateway (do_route sets it after OpenVPN's UP call)."""
        own = self._server_env()
        settings = {k: own.pop(k) for k in _SETTINGS_ORDER if k in own}
        if plugin:
            own.pop("redirect_gateway", None)
        newest_first = dict(reversed(own.items()))
        return {**newest_first, **with_globals(settings, newest_first, self.gw.opts.setenv)}

    def stop_notices(self) -> None:
        """At the server's stop, what management clients hear, as from Debian's 2.6 server:
        >UPDOWN:DOWN (management-up-down), then >STATE:...,EXITING,SIGTERM (or SIGINT). No DOWN
        when a SIGHUP's DOWN still waits for its UP (a SIGTERM while the reload's files are
        read): 2.6's device went down once at that SIGHUP, and its stop during the restart
        says EXITING only (measured: SIGHUP and SIGTERM back to back, or 0.02-3 s apart, gave
        one >UPDOWN:DOWN each time; ours said DOWN, DOWN and no EXITING)."""
        if not self._reload_restart:
            self.up_down("DOWN")
        if self.mgmt is not None:
            self.mgmt.notify([f">STATE:{int(self.wall())},EXITING,{self.stop_why},,,,,"], "state_on")

    def up_down(self, kind: str) -> None:
        """management-up-down: >UPDOWN:UP after the TUN is up, >UPDOWN:DOWN before it goes (only
        management clients connected then hear them, as OpenVPN's)."""
        if self.mgmt is not None and self.gw.opts.management_up_down:
            env = self.up_down_env()
            self.mgmt.notify_env(EnvBlock((f">UPDOWN:{kind}",), env, "UPDOWN", filtered=False))

    # ---------------------------------------------------------------- management-client-auth
    def ask_management(self, rec, e, check_pending: bool) -> bool:
        """Announce login `e` (an AuthRequested) to the management clients; False when too many
        wait already (the caller refuses it for now)."""
        assert self.client_auth is not None
        inf = self._info(rec)
        w = self.client_auth.add(rec, e.key_id, e.check, inf.cid, check_pending, restart=inf.restart)
        if w is None:
            return False
        env = self.user_pass_env(rec)
        # OpenVPN's, to the management client; control characters made `_` as OpenVPN does
        # (verify_user_pass): a CR/LF in a password would forge management lines.
        env["username"], env["password"] = remap_name(e.username), remap_name(e.password)
        if e.session_state is not None:
            env["session_state"], env["session_id"] = e.session_state, e.session_id or ""
        if self.mgmt is not None:
            mode = "REAUTH" if inf.established or inf.restart else "CONNECT"
            inf.announced = True
            self.mgmt.notify_env(EnvBlock((f">CLIENT:{mode},{inf.cid},{w.kid}",), env,
                                          peer_info=peer_info_lines(rec.session.peer_info)))
        return True

    def check_done(self, rec, key_id: int, check: object, v) -> bool:
        """The password file's or command's verdict on a login the management client is asked
        about too: True when taken here (decided with the other, or the login is over)."""
        if self.client_auth is None:
            return False
        w = self.client_auth.for_key(rec, key_id, check)
        if w is not None:
            w.checked = v.ok
            if not v.ok:
                w.client_reason, w.why = v.client_reason, v.why
            self._settle(w)
        return True

    def management_verdict(self, cid: int, kid: int, ok: bool, why: str = "", client_reason: str = "",
                           config: list[str] | None = None) -> bool:
        """client-auth / client-auth-nt / client-deny: False when no such login waits."""
        if self.client_auth is None:
            return self._verdict_without_client_auth(cid, kid)
        w = self.client_auth.by_ckid.get((cid, kid))
        if w is None:
            if (cid, kid) in self.client_auth.denied:   # refused: SUCCESS for 5 s, nothing done, as 2.6
                return self.client_auth.recently_denied(cid, kid, self.gw.clock())      # (mgmt_auth.py)
            rec = self.client_auth.let_in.get((cid, kid))
            if rec is None or not rec.alive:
                return kid == 0 and self._cid_alive(cid)    # 2.6's blank key state (below)
            if not ok:                          # a yes withdrawn: the session ends
                self._kick(rec, f"client-deny after client-auth: {why}" if why else "client-deny after client-auth")
            return True
        if not w.rec.alive:
            return False
        w.mgmt = ok
        if ok:
            w.config = list(config or [])
        elif w.checked is not False:
            w.client_reason, w.why = client_reason, (f"client-deny: {why}" if why else "client-deny")
        self._settle(w)
        return True

    def _verdict_without_client_auth(self, cid: int, kid: int) -> bool:
        """A verdict on a server without management-client-auth, as Debian's 2.6.14 answers it:
        its multi.c marks the client's key state with that KID (tls_authenticate_key) and says
        SUCCESS, but without management-client-auth that mark is never read -- the client goes on
        as before (seen beside ours: client-deny, client-auth-nt, client-auth's block; the client
        kept its row and its pings). So: SUCCESS, nothing done, for a client of that CID and a
        KID of its first connection's two key states, 0 and 1 (2.6 numbers each key state it
        makes for a client: a renegotiation's move the numbers on; not followed here, where a
        KID is each login announced, and without management-client-auth none is)."""
        return kid in (0, 1) and self._cid_alive(cid)

    def _cid_alive(self, cid: int) -> bool:
        """A session of client `cid` is here. Why KID 0 of such a client is answered SUCCESS
        with nothing done, management-client-auth or not (seen with Debian's 2.6.14:
        tests/interop/test_mgmt_client_auth_vs_openvpn.py): 2.6's verdict looks the KID up in the
        instance's three key-state slots (ssl_verify.c tls_authenticate_key), and a slot not in
        use is zeroed -- KID 0 -- so `client-auth-nt CID 0` and `client-deny CID 0 r` find one
        and mark a key state that decides nothing. (With a block, 2.6 also stores its lines as
        the instance's connect options while its real login waits -- multi.c
        management_client_auth -> set_cc_config -- where the real login's own answer replaces
        them, or clears them for client-auth-nt: they reach the connect only when sent after the
        real yes within one pass of its loop; not copied: here the block names no login and is
        dropped. No live key is ever numbered 0 in 2.6 (its first key state never handshakes:
        new sessions start on TM_INITIAL), and verdicts are read only from key states past
        S_SENT_KEY, cleared when reused, so the mark decides nothing there either: review48c.)
        Our KIDs start at 1, so 0 never names a login."""
        return any(inf.cid == cid and inf.rec.alive for inf in self.info.values())

    def management_pending(self, cid: int, kid: int, extra: str, timeout: int) -> bool:
        """client-pending-auth: that login waits longer, and its client is told what to do
        (Session.auth_pending); False when no such login waits or `extra` is too long."""
        w = self.client_auth.by_ckid.get((cid, kid)) if self.client_auth is not None else None
        if w is None:
            # A login refused just now: 2.6 says SUCCESS (and tells the refused client
            # AUTH_PENDING); ours tells it nothing more (mgmt_auth.py).
            return self.client_auth is not None and self.client_auth.recently_denied(cid, kid, self.gw.clock())
        return self.gw.d.auth_pending(w.rec, w.key_id, extra, timeout, self.gw.clock())

    def _settle(self, w) -> None:
        verdict = ClientAuthWait.decided(w)
        if verdict is None or self.client_auth is None:
            return
        self.client_auth.take(w, let_in=verdict, now=self.gw.clock())
        inf = self.info.get(id(w.rec))
        if verdict and w.config and inf is not None and not inf.established and not inf.continues \
                and w.rec.connect_state is None:
            # Applied at the connect step, so kept only while that is ahead (first login only):
            # a restart going on as its connection never runs it, nor does a login decided after
            # it began -- as 2.6, which frees a block once past CAS_WAITING_AUTH (multi.c
            # management_client_auth); kept, it stayed for the session's life (review48c).
            inf.mgmt_config, inf.mgmt_kid = w.config, w.kid
        self.gw.d.auth_result(w.rec, w.key_id, verdict, self.gw.clock(), client_reason=w.client_reason, why=w.why,
                              check=w.check)

    def user_pass_env(self, rec) -> dict[str, str]:
        """auth-user-pass-verify's environment (authscript.py adds script_type, the username, the
        password and the deferred-auth files). Before the tunnel is up, as OpenVPN 2.6 at that
        point: the client's address is untrusted_ip only, no pool address is leased yet."""
        inf = self._info(rec)
        e = self.env(rec, inf, "user-pass-verify")
        if not inf.established:
            for k in ("trusted_ip", "trusted_ip6", "trusted_port", "ifconfig_pool_remote_ip",
                      "ifconfig_pool_remote_ip6", "ifconfig_pool_netmask", "ifconfig_pool_local_ip"):
                e.pop(k, None)
        e.pop("username", None)       # the one being checked, not the one the session holds
        e["common_name"] = rec.session.peer_common_name or ""     # the record takes it once admitted
        # OpenVPN counts a client once it is established (multi_connection_established).
        e["n_clients"] = str(sum(1 for i in self.info.values() if i.established))
        return e

    def _client_env(self, rec, inf: ClientInfo, extra: dict | None = None) -> dict[str, str]:
        """>CLIENT:ESTABLISHED's and DISCONNECT's environment (`extra`: DISCONNECT's counters)."""
        e = dict(extra or {})                     # set last, so OpenVPN prints them first
        e.update(self.env(rec, inf, ""))
        return e

    def _env_lines(self, rec, inf: ClientInfo, extra: dict | None = None) -> list[str]:
        """Those as a management client at env-filter 0 reads them."""
        return env_lines(self._client_env(rec, inf, extra))


_CCD_UNCHECKED = object()       # a name the worker gave no verdict for (our bug): that client ends


def _ccd_verdicts(ccd, exclusive: bool, names: list[str]) -> tuple[dict, dict]:
    """In the reload's worker: each name's ccd_refusal (None: kept), and its effective file's
    options now (its own, else DEFAULT's; None: no file) where they could be read, each file
    read once (the DEFAULT file is the fall-back of many). A bug on one name leaves that name
    out of both; a file that does not parse is a refusal in the first (ccd_refusal) and left out
    of the second."""
    memo: dict = {}

    def read(cn: str):
        if cn not in memo:
            try:
                memo[cn] = ccd(cn)
            except ConfigError as e:
                memo[cn] = e
        got = memo[cn]
        if isinstance(got, ConfigError):
            raise got
        return got

    out: dict = {}
    files: dict = {}
    for cn in names:
        if cn in out:
            continue
        try:
            out[cn] = ccd_refusal(read, exclusive, cn)
        except Exception:  # noqa: BLE001 - our bug: that name has no verdict (its client ends)
            log.exception("reload: internal error reading the client-config-dir file of %r", cn)
            continue
        try:
            own = read(cn)
            files[cn] = own if own is not None or exclusive else read(CCD_DEFAULT)
        except ConfigError:
            pass                            # broken: refused in `out` already
        except Exception:  # noqa: BLE001 - our bug: not known, kept as it is
            log.exception("reload: internal error reading the client-config-dir file of %r", cn)
    return out, files


_ENV_NAME = re.compile(r"(?:IV|UV)_[A-Za-z0-9_]*")
_PEER_LINE_NAME = re.compile(r"[A-Za-z0-9_]+")
_ENV_VALUE_BAD = re.compile(r"[^\x21-\x7e]|[$(`]")
PEER_INFO_LINE_MAX = 255


def peer_info_lines(peer_info: dict[str, str]) -> dict[str, str]:
    """The peer-info as a login's >CLIENT block gives it at env-filter 1 and above (2.6's
    man_output_peer_info_env): every line whose name is letters, digits and `_` -- not only the
    IV_/UV_ ones the environment keeps (helper host44: 2.6 prints `FOO=x` there, and so does
    ours now) -- each value checked as for the environment, in the order the client sent them.
    A line over 255 characters is cut there (2.6's 256-byte buffer reads the rest as a line of
    its own, which a client could shape into a forged variable: not copied)."""
    return _checked_peer_info(list(peer_info), peer_info, _PEER_LINE_NAME)


def peer_info_env(peer_info: dict[str, str]) -> dict[str, str]:
    """The client's IV_/UV_ peer-info for scripts and >CLIENT:ENV lines, checked as OpenVPN 2.6
    does (output_peer_info_env, validate_peer_info_line): a name of letters, digits and `_` only,
    starting IV_ or UV_, or the line is left out; in the value, anything not printable ASCII,
    blanks, `$`, `(` and the backquote become `_`; a line is at most 255 characters. The client
    chooses these bytes: a CR or other line break in them would forge management lines, a shell
    character would reach a careless script. Newest first, as the environment holds them."""
    return _checked_peer_info(list(reversed(list(peer_info))), peer_info, _ENV_NAME)


def _checked_peer_info(order: list[str], peer_info: dict[str, str], name: "re.Pattern[str]") -> dict[str, str]:
    out: dict[str, str] = {}
    for k in order:
        if name.fullmatch(k) and len(k) < PEER_INFO_LINE_MAX:
            out[k] = _ENV_VALUE_BAD.sub("_", peer_info[k][:PEER_INFO_LINE_MAX - len(k) - 1])
    return out


