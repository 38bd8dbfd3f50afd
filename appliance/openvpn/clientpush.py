"""What the server pushes to each client, and the address it gets: the ccd file (`ifconfig-push`,
`iroute`, `push`, `push-reset`, `push-remove`, `disable`), the pools (with the address a returning name had),
duplicate-cn and max-clients at the moment of the push, and a client-connect script's verdict.

A mixin of ServerDispatcher (server.py), kept apart because it is the policy an operator configures,
while server.py is the protocol's bookkeeping.
"""
from __future__ import annotations

import ipaddress

from . import ciphers
from .compression import missing_library
from .config.ccd import with_ccd_pushes, without_blocked
from .count_checks import REPLACED_BY_RESTART, by_count, holds_a_place  # noqa: F401 - (server.py's import)
from .errors import CcdPending, ClientRefused, ConfigError, PushDeferred
from .events import ConnectRequested, Warning  # noqa: A004
from .given import given_under
from .peernames import to_bytes
from .poolfile import PoolMemory
from .server_model import ClientRecord, InternalError
from .session import Session
from .tls import CN_MAX_BYTES


# OpenVPN's CCD_DEFAULT: the client-config-dir file for clients without one of their own (a
# client whose name is DEFAULT is refused under ccd-exclusive, as there).
CCD_DEFAULT = "DEFAULT"


def ccd_refusal(ccd, exclusive: bool, cn: str) -> str | None:
    """Why the client-config-dir (`ccd`: common name -> parsed file or None) keeps the client
    `cn` out at a reload (ClientPush.ccd_refuses says why these reasons and no others). Reads
    files and touches nothing else: a reload's pass runs it in its worker (gateway/ops.py).
    A file that cannot be read or parsed refuses, in the words of the connect's refusal
    (_ccd_file): a reconnect would be refused on it, so keeping the client would keep it on its
    old options -- an `iroute` the operator removed in the same edit as the typo (reload44)."""
    try:
        own = ccd(cn)
        if exclusive and (own is None or cn == CCD_DEFAULT):
            return f"no client-config-dir file for {cn!r} (ccd-exclusive)"
        got = own if own is not None else ccd(CCD_DEFAULT)
    except ConfigError as e:
        return f"client-config-dir file for {cn!r}: {e}"
    if got is not None and got.disable:
        return f"client-config-dir file for {cn!r} says disable"
    return None


class ClientPush:
    def _push_for(self, s: Session) -> list[str]:
        opts = self._push_options(s)
        if s.peer_uses_comp:
            # Last, past the ccd's and a client-connect script's push-reset/push-remove: the
            # session frames so whatever they say.
            opts = [*opts, self._migrate_compression(s)]
        return opts

    def _push_options(self, s: Session) -> list[str]:
        rec: ClientRecord = s.owner
        if rec.connect_state == "pending" or s.restart_sent:
            raise PushDeferred()        # (told RESTART/HALT: no push, its end is coming: resume_push)
        if rec.connect_state == "done":
            return rec.connect_opts
        # username-as-common-name: the username stands for the client in ccd and duplicate-cn.
        if self.st.username_as_cn and s.peer_username and len(to_bytes(s.peer_username)) > CN_MAX_BYTES:
            # As OpenVPN 2.6 (verify_user_pass): a name it could not hold as a common name.
            raise ClientRefused(f"username-as-common-name: the username is longer than {CN_MAX_BYTES} "
                                "bytes, the longest common name")
        rec.common_name = s.peer_username if self.st.username_as_cn and s.peer_username else s.peer_common_name
        opts: list[str] = []
        try:
            ccd = self._ccd_file(rec.common_name or "", at_connect=True)
        except CcdPending as p:
            # A large file, read and parsed off the loop: the client waits as for a script
            # (nothing leased or routed yet); ccd_loaded asks again once it is in.
            rec.ccd_wait = p.key
            raise PushDeferred() from None
        if ccd is not None and ccd.disable:
            # OpenVPN's ccd `disable`: this client may not connect (decides who may connect,
            # so it is enforced, never merely parsed).
            raise ClientRefused(f"client-config-dir file for {rec.common_name!r} says disable")
        if rec.continues:
            # A restart in place of an established client: the connection's options as admitted,
            # as 2.6's instance keeps those of its first connect (its reconnect reads no ccd file).
            # Who may connect is still the file's say now (above: ccd-exclusive without a file,
            # a `disable`, a broken file refuse the restart) -- stricter than 2.6.14, whose
            # server never lets such a restart in at all (CAS_RECONNECT_PENDING).
            ccd = rec.ccd
        else:
            rec.given = given_under(self.st, ccd)
        rec.ccd = ccd
        if ccd is not None:
            self._session_options(s, ccd)
        pool = self.st.pool
        want = want6 = None
        if ccd is not None:
            want = ccd.ifconfig_push
            rec.iroutes = [ipaddress.IPv4Network(f"{n}/{m}", strict=False) for n, m in ccd.iroutes]
            rec.iroutes6 = [ipaddress.IPv6Network(n) for n in getattr(ccd, "iroutes6", ())]
            want6 = getattr(ccd, "ifconfig_ipv6_push", None)
            rec.extra_push = list(ccd.push)
            rec.push_reset = ccd.push_reset
            rec.push_remove = list(ccd.push_remove)
            rec.block_ifconfig = ccd.block_ifconfig
            rec.block_ifconfig_ipv6 = bool(ccd.block_ifconfig_ipv6)
            rec.vid = getattr(ccd, "vlan_pvid", None)
        # duplicate-cn and max-clients: count_checks.py, the one decision a reload's kept clients
        # meet too. Those waiting for client-connect's verdict count as in (review11c): they were
        # pushed to, and once the verdicts came, sessions of one name opened together were all in
        # (one name many times with duplicate-cn off, more clients than max-clients).
        present = [o for o in self._records() if o is not rec and holds_a_place(o)]
        verdict = by_count(rec, len(present),
                           [o for o in present if o.common_name == rec.common_name] if rec.common_name else [],
                           [r for r in self._restarted(rec) if r is not None and holds_a_place(r)],
                           self.st.duplicate_cn, self.st.max_clients)
        # What refuses this connect is said before the sessions of its name end (duplicate-cn
        # off): a refused second connect -- a second holder of the certificate, an operator's slip
        # in the file -- must not kick the working client for nothing (README, batch50). 2.6.14
        # refuses by count before its kill (at the instance's creation) and has no address
        # refusal at all (multi_client_connect_early_setup: multi_delete_dup first).
        if verdict.refused is not None:
            raise ClientRefused(verdict.refused, temporary=True)
        self._refuse_static(rec, want[0] if want is not None else None, want6)
        for other, why in verdict.ends:
            self._drop(other, why)
        pool_full = False
        if want is not None:
            ip, mask = want[0], want[1]
            self._lease_static(rec, ip)
            rec.vaddr, rec.vmask = ip, mask
            opts.append(f"ifconfig {ip} {mask}")
        elif pool is not None:
            mem = self._memory()
            ip = pool.lease_free(mem.pick(rec.common_name, pool)) if mem is not None else None
            ip = ip or pool.lease() or self._predecessors_lease(rec)
            if ip is None:
                # As OpenVPN 2.6 (multi.c): the client is let in with no address pushed, and
                # the log says so; its IPv6 pool address goes with the IPv4 one (2.6's pool
                # hands out both or neither). A 2.6 client then sits connected without an
                # address, ours reconnects (nothing pushed to configure). Refused TEMP before.
                pool_full = True
                self.events.append((rec, Warning(
                    f"no free --ifconfig-pool addresses are available: {rec.common_name} is connected with no "
                    "address (as OpenVPN 2.6)")))
            else:
                rec.vaddr = rec.pool_lease = ip
                opts.append(pool.ifconfig_push(ip))
        # `server`'s own pushes (route-gateway/topology first, net30's route after the address);
        # none for a server written out by hand, whose `push` lines say it all (serveraddressing.py).
        # A ccd's push-reset takes them too: 2.6's helper.c puts them in the push list that
        # push_reset empties (only what push.c adds at the reply -- ifconfig, peer-id, cipher,
        # protocol-flags, tun-mtu -- stays); ours kept them.
        first, after = ((), ()) if rec.push_reset else (self.st.addressing_push or ((), ()))
        opts[:0] = first
        opts += after
        if rec.vaddr:
            self.by_vaddr[rec.vaddr] = rec
            rec.vaddr_packed = ipaddress.IPv4Address(rec.vaddr).packed
            self.by_vaddr4[rec.vaddr_packed] = rec
        if want6 is not None and rec.vaddr6 is None:
            opts.append(self._ifconfig_ipv6_push(rec, want6))
        elif self.st.pool6 is not None and rec.vaddr6 is None and not pool_full:
            mem = self._memory()
            # Not `want6` (the ccd's static address, which keeps the memory as it is, below): a
            # remembered address the pool cannot give (past its 65,536, or held) is replaced
            # there by the one handed out instead, as 2.6 rewrites its pool file (review50e).
            remembered6 = mem.want(rec.common_name)[1] if mem is not None else None
            rec.vaddr6 = (self.st.pool6.lease_wanted(remembered6) if remembered6 else None) or self.st.pool6.lease()
            if rec.vaddr6 is not None:
                rec.pool6_lease = rec.vaddr6
                opts.append(self.st.pool6.ifconfig_push(rec.vaddr6))
                self.by_vaddr[rec.vaddr6] = rec
        mem = self._memory()
        if mem is not None and rec.common_name and (rec.vaddr or rec.vaddr6) and want is None and want6 is None:
            mem.note(rec.common_name, rec.vaddr, rec.vaddr6)
        rec.iroutes, rec.iroutes6 = self._within_route_quota(rec, [], [], rec.iroutes, rec.iroutes6)
        for n in rec.iroutes:
            self.iroutes.add(n, rec)
        for n6 in rec.iroutes6:
            self.iroutes6.add(n6, rec)
        if not rec.push_reset:
            opts += self.st.push
        opts = without_blocked(with_ccd_pushes(opts, rec.extra_push, rec.push_remove),
                               rec.block_ifconfig, rec.block_ifconfig_ipv6)
        if self.st.defer_connect:
            rec.connect_opts = opts
            rec.connect_state = "pending"
            self.events.append((rec, ConnectRequested()))
            raise PushDeferred()
        self._check_constraint(rec)
        return opts

    def _restarted(self, rec: ClientRecord) -> tuple[ClientRecord | None, ClientRecord | None]:
        """The sessions `rec` restarts, as 2.6's one instance going on: the one at its address
        it waits beside (`pending`), and the one whose peer-id it inherits after a float
        (`heirs`); None where there is none."""
        return (self.by_addr.get(rec.addr) if self.pending.get(rec.addr) is rec else None,
                self.by_peer_id.get(rec.peer_id) if self.heirs.get(rec.peer_id) is rec else None)

    def _predecessors_lease(self, rec: ClientRecord) -> str | None:
        """A full pool: the pool address of the established session `rec` restarts (review44a),
        shared until that one goes (at `rec`'s promotion, or its own end), as an ifconfig-push
        address in use is. Why: that session holds the address only until `rec` replaces it, so
        `rec` let in with no address (compat42's full pool) left it free for nobody -- and a 2.6
        client restarting in place (duplicate-cn, or no common name: nothing ends the old one
        before the push) sat connected without an address, where before it was refused TEMP
        and retried. The same for a session we told RESTART (a reload's restart, client-kill)
        whose client comes back from a new port (review44d, _told_predecessors): it holds its
        address until its acknowledgement, which 2.6's client never sends, so CLIENT_KILL_WAIT
        (5 s) -- the client is back within ~1 s, and at 2.6's SIGHUP every address was free.
        None without such a session."""
        pool = self.st.pool
        if pool is None:
            return None
        for prev in (*self._restarted(rec), *self._told_predecessors(rec)):
            if (prev is not None and prev is not rec and prev.alive and prev.session.established
                    and prev.pool_lease is not None and prev.pool_lease == prev.vaddr
                    and prev.pool_lease in pool.leased):
                pool.share(prev.pool_lease)
                return prev.pool_lease
        return None

    def _told_predecessors(self, rec: ClientRecord) -> list[ClientRecord]:
        """Sessions told RESTART/HALT that `rec` may be the comeback of: the same common name
        from the same host (any port: a client without `lport` reconnects from a new one), whose
        address no other comeback shares yet -- each told session's address goes to one
        newcomer, so two devices sharing a certificate (duplicate-cn) behind one NAT take one
        each. Only with duplicate-cn (or no name) can such a session still be there at the push:
        otherwise the newcomer's name ended it above."""
        if not rec.common_name:
            return []
        host = _host(rec.addr)
        pool = self.st.pool
        return [o for o in self._records()
                if o is not rec and o.session.restart_sent and o.common_name == rec.common_name
                and _host(o.addr) == host and pool is not None and not pool.shared.get(o.pool_lease or "", 0)]

    @staticmethod
    def _migrate_compression(s: Session) -> str:
        """`compress migrate` and a client that frames for compression: as OpenVPN 2.6
        (multi.c, multi_client_connect_compress_migrate), `compress stub-v2` to one that announces
        IV_COMP_STUBv2=1, else `comp-lzo no`; its session frames so from now on. (In 2.6 a
        ccd's or script's push-reset/push-remove could take the push away and leave the two ends
        framing differently; here it always goes.)"""
        if s.peer_info.get("IV_COMP_STUBv2") == "1":
            s.comp = "stub-v2"
            return "compress stub-v2"
        s.comp = "lzo-stub"
        return "comp-lzo no"

    def _ifconfig_ipv6_push(self, rec: ClientRecord, want6: tuple[str, int, str | None]) -> str:
        """A ccd `ifconfig-ipv6-push ADDR/BITS [REMOTE]`: the client's IPv6 address instead of one
        from the pool, and the `ifconfig-ipv6` line pushed for it. As ifconfig-push: held in the
        pool (not handed out meanwhile); one another client holds already is shared with a
        warning, the newer client holding the route. REMOTE defaults to the server's own
        address (server-ipv6's ::1), as OpenVPN 2.6, which refuses the line without either."""
        self._refuse_static(rec, None, want6)
        addr6, bits6, remote6 = want6
        pool6 = self.st.pool6
        cn = rec.common_name
        local6 = self.st.local_ip6 or (pool6.server_ip if pool6 is not None else None)
        other = self.by_vaddr.get(addr6)
        held = pool6.lease_static(addr6) if pool6 is not None else True
        if not held or (other is not None and other is not rec and other.alive):
            self.events.append((rec, Warning(f"ifconfig-ipv6-push {addr6} for {cn} is already in use")))
        if pool6 is not None and ipaddress.IPv6Address(addr6) in pool6.net:
            rec.pool6_lease = addr6
        rec.vaddr6 = addr6
        self.by_vaddr[addr6] = rec
        return f"ifconfig-ipv6 {addr6}/{bits6} {remote6 or local6}"

    def _refuse_static(self, rec: ClientRecord, ip: str | None, want6: tuple[str, int, str | None] | None) -> None:
        """ClientRefused for an `ifconfig-push` (`ip`) or `ifconfig-ipv6-push` (`want6`) that
        refuses the client: the server's own address (it would own it: its packets from there
        would pass as its own), an IPv6 one with no remote address to default to. Checked
        before anything of the connect is done -- before the sessions of its name end -- and
        where each line is applied (_lease_static, _ifconfig_ipv6_push: client-connect's too)."""
        cn = rec.common_name
        if ip is not None and self.st.local_ip4 is not None and ipaddress.IPv4Address(ip).packed == self.st.local_ip4:
            raise ClientRefused(f"ifconfig-push {ip} for {cn!r} is the server's own address")
        if want6 is None:
            return
        addr6, bits6, remote6 = want6
        pool6 = self.st.pool6
        local6 = self.st.local_ip6 or (pool6.server_ip if pool6 is not None else None)
        if remote6 is None and local6 is None:
            raise ClientRefused(f"client-config-dir file for {cn!r}: ifconfig-ipv6-push {addr6}/{bits6} names no "
                                "remote address and there is no server-ipv6 to take it from (as OpenVPN 2.6)")
        if addr6 == local6:
            raise ClientRefused(f"client-config-dir file for {cn!r}: ifconfig-ipv6-push {addr6} is the server's "
                                "own address")

    def _within_route_quota(self, rec: ClientRecord, have4: list, have6: list, new4: list,
                            new6: list) -> tuple[list, list]:
        """max-routes-per-client: of the iroutes `new4`/`new6` (beside `have4`/`have6`, routed
        already), those that fit in the client's quota, in the order OpenVPN 2.6 learns them (its
        addresses first, then iroute lines last first, IPv4 before IPv6: multi_add_iroutes); a
        route it holds already counts once. The others are not routed -- so nothing from them
        passes as its source either -- with one warning, as OpenVPN logs its quota exceeded."""
        room = self.st.max_routes_per_client - sum(
            1 for a in (rec.vaddr, rec.vaddr6) if a and self.by_vaddr.get(a) is rec)
        held = set(have4) | set(have6)
        room -= len(held)
        keep4: list = []
        keep6: list = []
        cut: list = []
        for keep, nets in ((keep4, new4), (keep6, new6)):
            for n in reversed(nets):
                if n in held:
                    continue
                if room > 0:
                    held.add(n)
                    keep.append(n)
                    room -= 1
                else:
                    cut.append(n)
        if cut:
            self._count("iroute beyond max-routes-per-client")
            self.events.append((rec, Warning(
                f"max-routes-per-client ({self.st.max_routes_per_client}) reached for {rec.common_name}: "
                f"{len(cut)} iroute(s) not routed ({', '.join(str(n) for n in cut[:3])}"
                f"{', ...' if len(cut) > 3 else ''})")))
        keep4.reverse()
        keep6.reverse()
        return keep4, keep6

    def _ccd_file(self, cn: str, at_connect: bool = False):
        """The client's client-config-dir file, else the directory's DEFAULT file, as OpenVPN 2.6
        (an operator's DEFAULT may say `disable`: only clients with a file of their own get in).
        ccd-exclusive wants a file of the client's own: DEFAULT does not count, nor does a
        client named DEFAULT (whose "own" file is everybody's), as with OpenVPN.
        `at_connect`: through the loader's `at_connect` where it has one (gateway/server_files.py:
        a large file raises CcdPending while a worker reads it)."""
        load = self.st.ccd
        if at_connect and load is not None:
            load = getattr(load, "at_connect", load)
        try:
            own = load(cn) if load is not None else None
            if self.st.ccd_exclusive and (own is None or cn == CCD_DEFAULT):
                raise ClientRefused(f"no client-config-dir file for {cn!r} (ccd-exclusive)")
            if own is not None or load is None:
                return own
            return load(CCD_DEFAULT)
        except ConfigError as e:
            # The operator's file is broken: this client is refused (its `disable`, iroute or
            # address may be in there), with the file and line in the log; others get in.
            raise ClientRefused(f"client-config-dir file for {cn!r}: {e}") from None

    def ccd_refuses(self, rec: ClientRecord) -> str | None:
        """Why the client-config-dir as it is now keeps `rec` out (ccd-exclusive without its file,
        a `disable`, a file that cannot be read or parsed), else None: for a reload's kept clients,
        whom 2.6's SIGHUP would have connect again through the file (ops.py _commit_reload). 2.6
        logs a broken file's errors and lets the client in with the lines it could read
        (multi.c: options_server_import at D_IMPORT_ERRORS, non-fatal); a new connection is
        refused on it here (_ccd_file), so a kept client is too: kept, it held the options of the
        file as it was, an `iroute` removed in the same edit still routed to it (reload44)."""
        if self.st.ccd is None:
            return None
        return ccd_refusal(self.st.ccd, self.st.ccd_exclusive, rec.common_name or "")

    def ccd_loaded(self, keys, now: float) -> None:
        """The ccd files keyed by `keys` were read and parsed off the loop: the clients waiting
        on one (CcdPending) go on with their push, which asks the loader again (its answer is
        ready now)."""
        for rec in [r for r in self._records() if r.ccd_wait is not None and r.ccd_wait in keys]:
            rec.ccd_wait = None
            if not rec.alive or rec.connect_state is not None:
                continue
            rec.session.resume_push(True, now)
            self._collect(rec)
            self._promote(rec)

    def connect_result(self, rec: ClientRecord, ok: bool, now: float, ccd=None, reason: str = "",
                       temporary: bool = False) -> None:
        """The verdict on a ConnectRequested; `ccd` (a parsed CcdOptions, from the file the
        client-connect script wrote) adds per-client options: push, push-reset, ifconfig-push,
        iroute. `temporary`: a refusal for now (AUTH_FAILED,TEMP: the client tries again)."""
        if not rec.alive or rec.connect_state != "pending":
            return
        if ok and ccd is not None and (why := self.connect_options(rec, ccd)) is not None:
            ok, reason = False, why
        rec.connect_state = "done"
        if ok:
            self._check_constraint(rec)
        rec.session.resume_push(ok, now, reason, temporary)
        self._collect(rec)
        self._promote(rec)

    def connect_options(self, rec: ClientRecord, ccd) -> str | None:
        """A client-connect script's (or client-auth's) options applied to a client still
        waiting for its verdict; if that failed, why (the client is then refused with it):
        the options' own refusal, or "internal error" for our bug."""
        try:
            self._apply_connect_options(rec, ccd)
        except ClientRefused as e:
            # Not our bug: the options themselves refuse it (an ifconfig-ipv6-push with no remote
            # address and no server IPv6 address to default to, the server's own address); the
            # log says why, and the client's end carries it (review49a: "internal error" before).
            self.events.append((rec, Warning(str(e))))
            return str(e)
        except Exception as e:  # noqa: BLE001 - our bug on this client's options: it ends
            # Never admitted without the options it was given (an address, iroutes, pushes
            # half applied or none): refused, and reported as our bug (the pump logs it and
            # ends the session, which frees whatever was applied).
            self._internal_errors.append(InternalError(rec, e, "applying a client's connect options"))
            return "internal error"
        return None

    # ---------------------------------------------------------------- learn-address
    def learnable(self, rec: ClientRecord) -> list[tuple[str, object]]:
        """The addresses routed to `rec` now, as OpenVPN 2.6 learns them when a client is admitted
        (multi_client_connect_late_setup): its IPv4 address, its IPv6 address, then its iroutes,
        each as (the text OpenVPN passes to learn-address, its key here). OpenVPN keeps iroutes in
        a list it prepends to (option_iroute), so they come last line first."""
        out: list[tuple[str, object]] = []
        if self.st.layer2:
            return out      # dev tap: 2.6 learns MACs only, as frames come (l2switch.py, gateway/learn.py)
        if rec.vaddr and self.by_vaddr.get(rec.vaddr) is rec:
            out.append((rec.vaddr, rec.vaddr))
        if rec.vaddr6 and self.by_vaddr.get(rec.vaddr6) is rec:
            out.append((rec.vaddr6, rec.vaddr6))
        seen = set()
        for n in reversed(rec.iroutes):
            if n not in seen:
                seen.add(n)
                out.append((str(n), n))        # a host route with its /32, as 2.6's iroute (netbits 32)
        for n6 in reversed(rec.iroutes6):
            if n6 not in seen:
                seen.add(n6)
                out.append((str(n6), n6))      # OpenVPN prints an iroute-ipv6 with its bits, /128 too
        return out

    def unlearn(self, rec: ClientRecord, key, prev: "ClientRecord | None" = None) -> None:
        """learn-address refused `key` (an address or an iroute of `rec`): nothing is routed to
        `rec` there, and nothing from `rec` with a source there passes (_check_sources). A route
        `prev` held (an ifconfig-push address two clients share) goes back to it, as OpenVPN
        keeps the old route when `update` is refused."""
        if isinstance(key, str):
            if self.by_vaddr.get(key) is not rec:
                return
            back = prev is not None and prev.alive and key in (prev.vaddr, prev.vaddr6)
            if back:
                self.by_vaddr[key] = prev
            else:
                del self.by_vaddr[key]
            if ":" not in key:
                packed = ipaddress.IPv4Address(key).packed
                if self.by_vaddr4.get(packed) is rec:
                    if back:
                        self.by_vaddr4[packed] = prev
                    else:
                        del self.by_vaddr4[packed]
            return
        six = isinstance(key, ipaddress.IPv6Network)
        table = self.iroutes6 if six else self.iroutes
        mine = rec.iroutes6 if six else rec.iroutes
        while key in mine:
            mine.remove(key)
            table.remove(key, rec)
        if prev is not None and prev.alive and key in (prev.iroutes6 if six else prev.iroutes):
            table.add(key, prev)

    @staticmethod
    def _session_options(s: Session, ccd) -> None:
        """A per-client file's lines for the client's own session, as OpenVPN 2.6 applies them
        to the client's instance (init.c do_deferred_options after multi.c's import): its
        keepalive timers (ping-exit ends a server's client as ping-restart does: the file's
        later line of the two replaces the session's timer, as both set 2.6's one), its compression framing, refused as 2.6 refuses it when the server says
        `allow-compression no`. Its `data-ciphers`, `cipher` and `data-ciphers-fallback` lines
        change the lists its data cipher is chosen from, at its push, after every source of
        per-client lines (ccd file, client-connect output, client-auth block), as 2.6 chooses
        after them (multi.c multi_client_connect_late_setup; compat48: ours chose before the file
        was read and refused a client whose file chose another cipher)."""
        where = getattr(ccd, "where", {})
        if getattr(ccd, "ping", None) is not None:
            s.ping_interval = ccd.ping
        if getattr(ccd, "ping_restart", None) is not None:
            s.ping_restart = ccd.ping_restart        # (0: off, as 2.6's ping_rec_timeout 0)
        comp = getattr(ccd, "comp", None)
        if comp is not None:
            if comp in ("lzo", "lz4", "lz4-v2"):
                if s.cfg.comp_stub_only:
                    raise ClientRefused(f"{where.get('comp', '')}: compression is not allowed since "
                                        "allow-compression is set to 'no' (as OpenVPN 2.6 refuses the client: "
                                        "\"invalid compression options\")")
                if (pkg := missing_library(comp)) is not None:
                    raise ClientRefused(f"{where.get('comp', '')}: decompressing {comp} needs the Python "
                                        f"package {pkg}, which this installation lacks")
            s.comp = comp
        if getattr(ccd, "data_ciphers", None) is not None or getattr(ccd, "fallback", None) is not None:
            s.client_ncp = ciphers.per_client(*(s.client_ncp or (s.cfg.data_ciphers, s.cfg.data_ciphers_fallback)),
                                              ccd)
            s.client_ncp_where = where.get("cipher", "")

    def _apply_connect_options(self, rec: ClientRecord, ccd) -> None:
        opts = rec.connect_opts
        self._session_options(rec.session, ccd)
        if getattr(ccd, "vlan_pvid", None) is not None:
            rec.vid = ccd.vlan_pvid              # (vlan-tagging: the client's VLAN, as a ccd's)
        want = getattr(ccd, "ifconfig_push", None)
        if want is not None:
            ip, mask = want[0], want[1]
            pool = self.st.pool
            if rec.vaddr and self.by_vaddr.get(rec.vaddr) is rec:
                del self.by_vaddr[rec.vaddr]
                self.by_vaddr4.pop(rec.vaddr_packed, None)
            if pool is not None and rec.pool_lease is not None:
                pool.release(rec.pool_lease)
                rec.pool_lease = None
            self._lease_static(rec, ip)
            rec.vaddr, rec.vmask = ip, mask
            rec.vaddr_packed = ipaddress.IPv4Address(ip).packed
            self.by_vaddr[ip] = rec
            self.by_vaddr4[rec.vaddr_packed] = rec
            opts[:] = [o for o in opts if not o.startswith("ifconfig ")]
            opts.append(f"ifconfig {ip} {mask}")
        want6 = getattr(ccd, "ifconfig_ipv6_push", None)
        if want6 is not None:
            if rec.vaddr6 and self.by_vaddr.get(rec.vaddr6) is rec:
                del self.by_vaddr[rec.vaddr6]
            if self.st.pool6 is not None and rec.pool6_lease is not None:
                self.st.pool6.release(rec.pool6_lease)
            rec.vaddr6 = rec.pool6_lease = None
            line6 = self._ifconfig_ipv6_push(rec, want6)
            opts[:] = [o for o in opts if not o.startswith("ifconfig-ipv6 ")]
            opts.append(line6)
        new4 = [ipaddress.IPv4Network(f"{n}/{m}", strict=False) for n, m in getattr(ccd, "iroutes", [])]
        new6 = [ipaddress.IPv6Network(n) for n in getattr(ccd, "iroutes6", [])]
        new4, new6 = self._within_route_quota(rec, rec.iroutes, rec.iroutes6, new4, new6)
        for net in new4:
            rec.iroutes.append(net)
            self.iroutes.add(net, rec)
        for net6 in new6:
            rec.iroutes6.append(net6)
            self.iroutes6.add(net6, rec)
        if getattr(ccd, "push_reset", False):
            keep = ("ifconfig ", "ifconfig-ipv6 ")     # 2.6: topology, route-gateway go too (above)
            opts[:] = [o for o in opts if o.startswith(keep)]
        opts[:] = with_ccd_pushes(opts, list(getattr(ccd, "push", [])), list(getattr(ccd, "push_remove", [])))
        # A block holds for the rest of the connect (OpenVPN's flag on the client's options): an
        # ifconfig-push here after the ccd file's `push-remove ifconfig` is not pushed either.
        rec.block_ifconfig |= bool(getattr(ccd, "block_ifconfig", False))
        if getattr(ccd, "block_ifconfig_ipv6", None) is not None:
            rec.block_ifconfig_ipv6 = ccd.block_ifconfig_ipv6
        opts[:] = without_blocked(opts, rec.block_ifconfig, rec.block_ifconfig_ipv6)

    def _lease_static(self, rec: ClientRecord, ip: str) -> None:
        """An ifconfig-push address: leased to `rec` (so the pool does not hand it out meanwhile);
        one already in use is shared, with a warning, so it is freed only when the last client
        on it is gone, whichever of them holds the route. The server's own tunnel address
        refuses the client, as an `ifconfig-ipv6-push` of its IPv6 one (_ifconfig_ipv6_push):
        OpenVPN 2.6.14 admits it and then answers that address itself and drops what the client
        sends from it (server.py route_packet, _check_sources do the same for any way such an
        address could still come), so the client sits connected on a tunnel that carries
        nothing of its own -- an operator's slip said at connect is better than a silent one."""
        self._refuse_static(rec, ip, None)
        pool = self.st.pool
        if pool is None:
            return
        if pool.lease(ip) is None:
            self.events.append((rec, Warning(f"ifconfig-push {ip} for {rec.common_name} is already in use")))
            pool.share(ip)
        rec.pool_lease = ip

    def _check_constraint(self, rec: ClientRecord) -> None:
        """ifconfig-push-constraint: a client whose address (final, after client-connect) lies
        outside is logged, once a connection, as OpenVPN 2.6 does (multi.c), which lets it in all
        the same (its source says the refusal it meant to add never came)."""
        c = self.st.ifconfig_push_constraint
        if c is None or not rec.vaddr:
            return
        net, mask = c
        if int(ipaddress.IPv4Address(rec.vaddr)) & mask != net:
            self.events.append((rec, Warning(
                f"primary virtual IP for {rec.common_name} ({rec.vaddr}) violates tunnel network/netmask "
                f"constraint ({ipaddress.IPv4Address(net)}/{ipaddress.IPv4Address(mask)})")))

    def _memory(self) -> PoolMemory | None:
        """Which name had which pool address (ifconfig-pool-persist's file, or in memory): a
        client that comes back gets its address back, as with OpenVPN. Not with duplicate-cn,
        where one name is many clients."""
        if self.st.duplicate_cn:
            return None
        if self.st.pool_memory is None:
            self.st.pool_memory = PoolMemory.in_memory()
        return self.st.pool_memory


def _host(addr) -> str | None:
    """The peer's IP address, whatever the transport's record key (UDP: (ip, port); TCP: a
    StreamKey with .ip)."""
    if isinstance(addr, tuple):
        return str(addr[0])
    return getattr(addr, "ip", None)
