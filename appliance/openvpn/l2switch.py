"""The layer-2 server's data path (dev tap): Ethernet frames switched by MAC address between the
TAP device and the clients, as OpenVPN 2.6's multi.c does (multi_process_incoming_link / _tun with
DEV_TYPE_TAP, mroute.c for which addresses are learned).

What 2.6 does and we do:
- A client's frame teaches its source MAC (never a broadcast, multicast, all-zero or all-ones
  one: such a frame is dropped). Frames to a broadcast/multicast MAC go to the TAP device and,
  with client-to-client, to every other client; a unicast frame goes to the client that holds
  its destination MAC when client-to-client allows, else to the TAP device.
- A frame from the TAP device goes to the client holding its destination MAC; broadcast and
  multicast to every client; unknown unicast is dropped (2.6 does not flood it: another client
  would see traffic that is not its own).
- mssfix clamps TCP SYNs inside untagged IPv4/IPv6 frames (2.6's process_ip_header on a TAP).
- `iroute` plays no part: frames are switched by MAC alone.

Where we are stricter than 2.6 (MacTable): a client may not take a MAC another connected client
used in the last MOVE_IDLE seconds, unless it has the same common name (the same client come back
on a new session): 2.6 moves the MAC to whoever sent last, so a client could steal another's
traffic by sending one frame from its MAC. max-routes-per-client bounds the MACs one client holds,
as in 2.6; beyond it a new MAC replaces that client's own least recently used one (2.6 refuses
the new one: a bridged LAN behind a client that has seen more hosts than the quota would never
learn its newer ones). So a client sending from a million MACs holds at most its quota, and
never evicts another's. Its broadcasts replicated to the other clients are rate-limited (a token
bucket per client): a storm from one client costs each other client a bounded rate.
The server side's MACs are no client's: the TAP device's own (the clients' gateway in `server`
mode) and any MAC seen as the source of a frame from the TAP device within MOVE_IDLE (a bridged
LAN's hosts, its router). 2.6 lets a client take them: with client-to-client one frame from the
TAP's MAC sent every other client's frames to the server to that client instead. A MAC the TAP
side sends from is taken back from a client that claimed it first.

802.1Q VLANs (`vlan-tagging`, as 2.6's vlan.c; Vlans below): each client is on one VLAN, its ccd's
or client-connect's `vlan-pvid`, else the server's. A MAC is learned per VLAN (MAC@VID), frames and
broadcasts go only between clients of one VLAN, a client's tagged frame (a VID not 0; stricter
than 2.6: a priority tag around another tag, an 802.1ad/0x9100 tag -- client_tagged) is dropped,
and on the TAP device, as `vlan-accept` says: `all` -- frames of the server's own `vlan-pvid` go
untagged, others tagged with their VLAN; `tagged` -- every frame tagged; `untagged` -- only the
server's VLAN, untagged (frames of other VLANs never reach it). A frame from the TAP device is on
the VLAN of its tag (the tag taken off before it goes to a client; a priority tag with VID 0 kept,
on the server's VLAN), untagged on the server's VLAN -- unless vlan-accept refuses it, or it would
reach a client with a VLAN tag still in it (a second tag; stricter than 2.6: a client takes and
gets no VLAN but a priority tag, both ways).

learn-address (the hooks `ask`/`unlearn`, run by gateway/learn.py): as 2.6, a frame from a MAC
new to its client passes only once the command said yes (`add` or `update MAC@0 CN`); until then
it is dropped, as 2.6 drops it when the command fails. Unlike 2.6, which runs the command inside
its loop for every such frame, a client has at most LEARN_WAITING commands running, all clients
together LEARN_WAITING_ALL (the rest of the runner stays for client-connect and the deletes), and
a refused MAC is asked about again after LEARN_RETRY only.
"""
from __future__ import annotations

from typing import Callable

from .datapath import BCAST_BURST, BCAST_RATE  # noqa: F401 - the broadcast rate, shared with the tun server
from .datapath import BCAST_OVER_RATE, MssPolicy, MssRule, ReplicationBudget, seal_shares, share
from .server import ClientRecord, ServerDispatcher

ETH_HLEN = 14
MOVE_IDLE = 30.0           # seconds a MAC must be unused by its holder before another client takes it
REPLACED = "MAC replaced by a newer one (max-routes-per-client)"
WAITING = "frame from a MAC waiting for learn-address"
LEARN_REFUSED = "frame from a MAC learn-address refused"
LEARN_WAITING = 4          # learn-address commands one client may have running at once
LEARN_WAITING_ALL = 32     # ... and all clients together: half the server's script runner (64 at once)
LEARN_RETRY = 10.0         # seconds before a MAC learn-address refused is asked about again
LEARN_REFUSED_MAX = 65536  # refusals remembered (then the expired ones go, or all)
REFRESH = 1.0              # seconds: a MAC's last use is noted at most this often (LRU order)
SERVER_SIDE = "frame from a MAC of the server's side"
SERVER_SIDE_MAX = 65536    # MACs seen from the TAP side remembered (then the expired ones go, or all)


def learnable(mac: bytes) -> bool:
    """A source MAC a client may hold: not multicast (broadcast included), not all zeros (mroute.c)."""
    return not mac[0] & 1 and mac != b"\0\0\0\0\0\0"


class MacTable:
    """MAC -> the client holding it, with each client's MACs in least-recently-used order."""

    def __init__(self, per_client: int, stats: dict[str, int] | None = None) -> None:
        self.per_client = max(per_client, 1)
        self.stats = stats if stats is not None else {}
        self.owner: dict[bytes, ClientRecord] = {}
        self.held: dict[int, dict[bytes, float]] = {}     # id(client) -> its MACs -> last use, oldest first
        self.on_evict: Callable[[ClientRecord, bytes], None] | None = None   # (learn-address's delete)

    def may_take(self, mac: bytes, rec: ClientRecord, now: float) -> bool:
        """Whether `rec` may hold `mac` (see the module docstring: not another's in recent use)."""
        owner = self.owner.get(mac)
        if owner is None or owner is rec or not owner.alive:
            return True
        theirs = self.held.get(id(owner))
        last = theirs.get(mac, 0.0) if theirs is not None else 0.0
        same = bool(owner.common_name) and owner.common_name == rec.common_name     # ("" names nobody)
        return same or now - last >= MOVE_IDLE

    def learn(self, mac: bytes, rec: ClientRecord, now: float) -> bool:
        """Whether `rec` may send from `mac` (then it holds it)."""
        owner = self.owner.get(mac)
        if owner is rec:
            own = self.held[id(rec)]
            if now - own[mac] >= REFRESH:
                del own[mac]
                own[mac] = now
            return True
        if owner is not None:
            if not self.may_take(mac, rec, now):
                return False
            theirs = self.held.get(id(owner))
            if theirs is not None:
                theirs.pop(mac, None)
        own = self.held.setdefault(id(rec), {})
        while len(own) >= self.per_client:      # (a reload may have lowered the quota)
            old = next(iter(own))
            del own[old]
            del self.owner[old]
            self.stats[REPLACED] = self.stats.get(REPLACED, 0) + 1
            if self.on_evict is not None:
                self.on_evict(rec, old)
        own[mac] = now
        self.owner[mac] = rec
        return True

    def forget(self, rec: ClientRecord) -> None:
        """`rec` left: its MACs are free."""
        own = self.held.pop(id(rec), None)
        for mac in own or ():
            if self.owner.get(mac) is rec:
                del self.owner[mac]

    def reconcile(self, live: set[int]) -> int:
        """After our bug before the switch's forget() of a client ran (ServerDispatcher.reconcile,
        only when its books are suspect): every MAC whose holder is gone is free, and the MAC
        lists of ids no live client has are dropped -- kept, a reused id would have made a new
        client start with a gone one's MACs against its quota. `live`: the ids of the live
        clients. How many entries were dropped."""
        dead = [mac for mac, rec in self.owner.items() if not rec.alive]
        for mac in dead:
            del self.owner[mac]
        gone = [i for i in self.held if i not in live]
        for i in gone:
            del self.held[i]
        return len(dead) + len(gone)

    def drop(self, mac: bytes) -> ClientRecord | None:
        """`mac` is no longer its holder's (the server's side uses it) -> that holder, if any."""
        rec = self.owner.pop(mac, None)
        if rec is not None:
            own = self.held.get(id(rec))
            if own is not None:
                own.pop(mac, None)
        return rec

    def macs_of(self, rec: ClientRecord) -> list[bytes]:
        return list(self.held.get(id(rec), ()))

    def __len__(self) -> int:
        return len(self.owner)


def mac_text(mac: bytes) -> str:
    """As 2.6 prints a learned MAC (mroute_addr_print): its VLAN id after @, 0 untagged. A table
    key is the MAC, or with vlan-tagging the MAC and its VLAN (two bytes more)."""
    vid = int.from_bytes(mac[6:8], "big") if len(mac) == 8 else 0
    return ":".join(f"{b:02x}" for b in mac[:6]) + f"@{vid}"


TPID_HI, TPID_LO = 0x81, 0x00           # 802.1Q's ethertype
VLAN_HLEN = 18
VLAN_REFUSED = "frame refused by vlan-accept"
VLAN_TAGGED = "VLAN-tagged frame from a client"
VLAN_INNER = "frame from the TAP with a VLAN tag for a client"


S_TAGS = (0x88A8, 0x9100)               # 802.1ad's service tag, and the older QinQ one switches take


def client_tagged(p) -> bool:
    """Whether a client's frame carries a VLAN of its own -- dropped with vlan-tagging, the VLAN
    being the server's to give. 2.6 (vlan_is_tagged) looks at one 0x8100 tag only; so do we,
    and further: a priority tag (VID 0) around another tag, and an S-tag (0x88a8, 0x9100) alone.
    Why: a frame of a client on the server's VLAN reaches the TAP untouched, and Linux's receive
    path (net/core/dev.c) takes an outer VID-0 tag off and gives the frame to the inner tag's
    VLAN device (0x8100 or 0x88a8), as a switch's S-tag port does with 0x88a8/0x9100 -- one tag
    more and a VLAN-1 client's frame was on VLAN 5. A few byte reads per frame."""
    if len(p) < ETH_HLEN:
        return False
    et = (p[12] << 8) | p[13]
    if et in S_TAGS:
        return True
    if et != 0x8100:
        return False
    if len(p) < VLAN_HLEN or ((p[14] & 0x0F) << 8) | p[15]:
        return True
    return ((p[16] << 8) | p[17]) in (0x8100, *S_TAGS)


def tag_vid(p) -> int | None:
    """The VID of an 802.1Q-tagged frame (0: only priority-tagged), -1 for a tagged frame too short
    for its tag, None for an untagged frame."""
    if len(p) < ETH_HLEN or p[12] != TPID_HI or p[13] != TPID_LO:
        return None
    if len(p) < VLAN_HLEN:
        return -1
    return ((p[14] & 0x0F) << 8) | p[15]


class Vlans:
    """vlan-tagging's two conversions at the TAP device (2.6's vlan_decapsulate and
    vlan_process_outgoing_tun), sans I/O: a frame in, the frame out (a new object when it changes)
    or None when it is dropped."""

    def __init__(self, accept: str, pvid: int) -> None:
        self.accept, self.pvid = accept, pvid

    def from_tap(self, p):
        """-> (the frame for the clients, its VLAN), or None when vlan-accept refuses it."""
        vid = tag_vid(p)
        if vid is None:
            return None if self.accept == "tagged" else (p, self.pvid)
        if vid < 0 or (vid and self.accept == "untagged"):
            return None
        if vid == 0:
            return p, self.pvid                # priority-tagged: kept as it is, on the port's VLAN
        return bytes(p[:12]) + bytes(p[16:]), vid

    def to_tap(self, p, vid: int):
        """A client's frame (on VLAN `vid`) as the TAP device gets it, or None."""
        if self.accept == "untagged" or (self.accept == "all" and vid == self.pvid):
            return p if vid == self.pvid else None
        tv = tag_vid(p)
        if tv is None:
            return bytes(p[:12]) + bytes((TPID_HI, TPID_LO, vid >> 8, vid & 0xFF)) + bytes(p[12:])
        if tv != 0:
            return None                       # (a short or VLAN-tagged frame: dropped before this)
        q = bytearray(p)
        q[14] = (q[14] & 0xF0) | (vid >> 8)   # a priority tag: its PCP and DEI kept
        q[15] = vid & 0xFF
        return q


class SwitchDataPath:
    """ServerDataPath's contract (from_link, from_tun, stats, failed, c2c, mss) for frames."""

    def __init__(self, dispatcher: ServerDispatcher, mss_rule: MssRule, client_to_client: bool) -> None:
        self.d = dispatcher
        self.mss = MssPolicy(mss_rule)
        self.c2c = client_to_client
        self.stats = {"no route": 0, "frame too short": 0, "frame from a group MAC": 0,
                      "frame from another client's MAC": 0, BCAST_OVER_RATE: 0, REPLACED: 0, WAITING: 0,
                      LEARN_REFUSED: 0, SERVER_SIDE: 0}
        st = dispatcher.st
        self.vlans = Vlans(*st.vlan) if getattr(st, "vlan", None) else None
        if self.vlans is not None:
            self.stats[VLAN_REFUSED] = self.stats[VLAN_TAGGED] = self.stats[VLAN_INNER] = 0
        # The server side's MACs (module docstring): the TAP device's own, set by the gateway
        # once the device is up, and those seen as sources from it -> when last seen.
        self.server_mac: bytes | None = None
        self.server_side: dict[bytes, float] = {}
        self.macs = MacTable(dispatcher.st.max_routes_per_client, self.stats)
        self.failed: list[tuple[ClientRecord, Exception]] = []
        self.bcast = ReplicationBudget(self.stats)        # a client's broadcasts copied to the others (c2c)
        dispatcher.on_forget = self._forget
        dispatcher.on_reconcile = self.reconcile
        # learn-address (gateway/learn.py): ask(client, MAC) -> True to learn it at once (no
        # command configured), False when the command was asked (learn_result says);
        # unlearn(client, MAC): a MAC it held is no longer its (its quota full).
        self.ask: Callable[[ClientRecord, bytes], bool] | None = None
        self.unlearn: Callable[[ClientRecord, bytes], None] | None = None
        # relearn(client, MAC): the command told again that the client holds it (_give_back),
        # whatever it answers (the switch already decided) and however full the runner is.
        self.relearn: Callable[[ClientRecord, bytes], None] | None = None
        self.macs.on_evict = self._evicted
        self.asking: dict[tuple[int, bytes], ClientRecord] = {}    # (id(client), MAC) -> client, command running
        self._asking_of: dict[int, int] = {}                        # id(client) -> how many
        self.refused: dict[tuple[int, bytes], float] = {}          # (id(client), MAC) -> asked again after
        # id(client) -> its MACs in `refused`: they go when it goes (_forget), so a new client
        # given a reused id() inherits none of them (its frames from such a MAC were dropped for
        # up to LEARN_RETRY without the command being asked).
        self._refused_of: dict[int, set[bytes]] = {}

    def _forget(self, rec: ClientRecord) -> None:
        self.macs.forget(rec)
        self.bcast.forget(rec)
        if self._asking_of.pop(id(rec), None):
            for k in [k for k, r in self.asking.items() if r is rec]:
                del self.asking[k]
        for mac in self._refused_of.pop(id(rec), ()):
            self.refused.pop((id(rec), mac), None)

    def reconcile(self, live: dict[int, ClientRecord]) -> int:
        """ServerDispatcher.reconcile's part for the switch (its on_reconcile): what the MAC table,
        the learn-address bookkeeping and the broadcast budgets hold of clients that are gone --
        left by our bug before _forget ran. Why it matters: a MAC still led to its gone holder,
        whose frames from the TAP (sealed with the ended session's keys) went on reaching that
        client until another client sent from the MAC. How many entries were dropped."""
        ids = set(live)
        fixed = self.macs.reconcile(ids) + self.bcast.reconcile(ids)
        for k in [k for k, r in self.asking.items() if not r.alive]:
            del self.asking[k]
            fixed += 1
        for i in [i for i in self._asking_of if i not in ids]:
            del self._asking_of[i]
        for k in [k for k in self.refused if k[0] not in ids]:
            del self.refused[k]
        self._refused_of = {i: m for i, m in self._refused_of.items() if i in ids}
        return fixed

    def _evicted(self, rec: ClientRecord, mac: bytes) -> None:
        if self.unlearn is not None:
            self.unlearn(rec, mac)

    def _may_learn(self, rec: ClientRecord, mac: bytes, now: float) -> bool:
        """A MAC new to `rec`, with learn-address: True when it may be learned now; else its frame
        waits (dropped) for the command's verdict, as 2.6 learns only what the command accepted.
        Bounds: LEARN_WAITING commands per client at once (LEARN_WAITING_ALL in all: 16 clients
        flooding MACs filled the script runner, refusing every client-connect and holding the
        deletes back), a refused MAC asked again only after LEARN_RETRY (not once per frame),
        the refusals remembered at most LEARN_REFUSED_MAX."""
        if not self.macs.may_take(mac, rec, now):
            return False                      # (learn() counts it)
        key = (id(rec), mac)
        if key in self.asking:
            self.stats[WAITING] += 1
            return False
        until = self.refused.get(key)
        if until is not None:
            if now < until:
                self.stats[LEARN_REFUSED] += 1
                return False
            self._unrefuse(key)
        n = self._asking_of.get(id(rec), 0)
        if n >= LEARN_WAITING or len(self.asking) >= LEARN_WAITING_ALL:
            self.stats[WAITING] += 1
            return False
        assert self.ask is not None
        self.asking[key] = rec                # (before asking: a verdict may come at once)
        self._asking_of[id(rec)] = n + 1
        if self.ask(rec, mac):
            self._done_asking(key, rec)
            return True
        self.stats[WAITING] += 1
        return False

    def _done_asking(self, key: tuple[int, bytes], rec: ClientRecord) -> bool:
        if self.asking.pop(key, None) is None:
            return False
        n = self._asking_of.get(id(rec), 1) - 1
        if n > 0:
            self._asking_of[id(rec)] = n
        else:
            self._asking_of.pop(id(rec), None)
        return True

    def learn_result(self, rec: ClientRecord, mac: bytes, ok: bool, now: float) -> None:
        """learn-address's verdict on `rec`'s `mac`: learned (its next frame passes), or refused
        for LEARN_RETRY. False too when the command could not be run (the runner full)."""
        key = (id(rec), mac)
        asked = self._done_asking(key, rec)
        if ok and not (asked and rec.alive and not self._servers(mac, now) and self.macs.learn(mac, rec, now)):
            self._give_back(rec, mac)
            return
        if not asked or not rec.alive or ok:
            return                            # (not asked: it left meanwhile)
        if len(self.refused) >= LEARN_REFUSED_MAX:
            self.refused = {k: t for k, t in self.refused.items() if t > now}
            if len(self.refused) >= LEARN_REFUSED_MAX:
                self.refused.clear()
            self._refused_of = {}
            for i, m in self.refused:
                self._refused_of.setdefault(i, set()).add(m)
        self._refused_of.setdefault(key[0], set()).add(key[1])
        self.refused[key] = now + LEARN_RETRY

    def _unrefuse(self, key: tuple[int, bytes]) -> None:
        """A refusal's time is over: it goes, and its client's count with it."""
        del self.refused[key]
        mine = self._refused_of.get(key[0])
        if mine is not None:
            mine.discard(key[1])
            if not mine:
                del self._refused_of[key[0]]

    def _give_back(self, rec: ClientRecord, mac: bytes) -> None:
        """learn-address said yes to `rec` for `mac` (an `add`, or an `update` from the client
        holding it), but `rec` does not hold it: it left meanwhile, the holder sent from it again
        within MOVE_IDLE, or the server side did. The command's view must end as the switch's,
        as 2.6's calls follow its routing table: the holder is named again (`update MAC CN`),
        else `rec`'s yes is undone (`delete`). Why: told only `delete` (or nothing), a firewall-style script
        dropped or stopped tracking the MAC its holder kept sending from -- one frame from a
        quiet client's MAC, timed with its next one, or followed by a disconnect, was enough --
        and the holder's own `delete` at its leaving never came."""
        holder = self.macs.owner.get(mac)
        if holder is rec:
            return                            # (the verdict on such a naming again: nothing to do)
        if holder is not None and holder.alive:
            if self.relearn is not None:
                self.relearn(holder, mac)
        elif rec.alive and self.unlearn is not None:
            self.unlearn(rec, mac)

    # ---------------------------------------------------------------- client -> TAP / clients
    def from_link(self, packet, addr, now: float, to_tun: Callable[[object], None], sends: dict) -> ClientRecord | None:
        rec, pts = self.d.receive(packet, addr, now)
        if not pts or rec is None:
            return rec
        s = rec.session
        stats, macs = self.stats, self.macs
        vlans, vid, vb, put = self.vlans, 0, b"", to_tun
        if vlans is not None:
            vid = rec.vid or vlans.pvid
            vb = vid.to_bytes(2, "big")
            put = self._to_tap(vid, to_tun)
        shares: dict = {}           # client-to-client: id(client) -> (it, its frames), sealed at the end
        for p in pts:
            if len(p) < ETH_HLEN:
                stats["frame too short"] += 1
                s.not_traffic += len(p) + s.framing
                continue
            if vlans is not None and client_tagged(p):     # (2.6: a client sends no VLAN of its own)
                stats[VLAN_TAGGED] += 1
                s.not_traffic += len(p) + s.framing
                continue
            src = bytes(p[6:12])
            if not learnable(src):
                stats["frame from a group MAC"] += 1
                s.not_traffic += len(p) + s.framing
                continue
            src += vb
            if macs.owner.get(src) is not rec and self._servers(src, now):
                stats[SERVER_SIDE] += 1
                s.not_traffic += len(p) + s.framing
                continue
            if self.ask is not None and macs.owner.get(src) is not rec and not self._may_learn(rec, src, now):
                s.not_traffic += len(p) + s.framing
                if not macs.may_take(src, rec, now):
                    stats["frame from another client's MAC"] += 1
                continue
            if not macs.learn(src, rec, now):
                stats["frame from another client's MAC"] += 1
                s.not_traffic += len(p) + s.framing
                continue
            if p[0] & 1:                                   # broadcast / multicast
                if self.c2c and self.bcast.allow(rec, now, len(self.d.by_addr) - 1):   # (every other client: a bound)
                    for other in self._others(rec, vid):
                        share(shares, other, p)
                put(p)
                continue
            p = self._clamp(p, s)
            other = macs.owner.get(bytes(p[0:6]) + vb)
            if other is None or other is rec or not other.alive:   # (a gone holder's MAC is free: see reconcile)
                put(p)
            elif self.c2c:
                if other.session.established:
                    share(shares, other, p)
                else:
                    stats["no route"] += 1
            else:
                put(p)              # as 2.6: the host (its bridge) decides; it never sends it back here
        if shares:                  # (sealed while the frames, views into the session's buffer, hold)
            seal_shares(shares, now, sends, self.d.note_sent, self.failed)
        return rec

    def _to_tap(self, vid: int, to_tun: Callable[[object], None]) -> Callable[[object], None]:
        """vlan-tagging: a client's frames on VLAN `vid` to the TAP device as vlan-accept says."""
        vlans, stats = self.vlans, self.stats
        assert vlans is not None

        def put(p) -> None:
            q = vlans.to_tap(p, vid)
            if q is None:
                stats[VLAN_REFUSED] += 1
            else:
                to_tun(q)
        return put

    def _others(self, rec: ClientRecord | None, vid: int = 0) -> list[ClientRecord]:
        """The established clients but `rec`; with vlan-tagging those on VLAN `vid` only."""
        if self.vlans is None:
            return [o for o in self.d.by_addr.values() if o is not rec and o.alive and o.session.established]
        pvid = self.vlans.pvid
        return [o for o in self.d.by_addr.values()
                if o is not rec and o.alive and o.session.established and (o.vid or pvid) == vid]

    def _servers(self, mac: bytes, now: float) -> bool:
        """Whether `mac` is the server side's (the TAP device's own, on any VLAN, or a source from
        it lately)."""
        if mac[:6] == self.server_mac:
            return True
        seen = self.server_side.get(mac)
        return seen is not None and now - seen < MOVE_IDLE

    def _saw_server_side(self, mac: bytes, now: float) -> None:
        """`mac` is the source of a frame from the TAP device: the server side's from now on; a
        client that held it loses it (learn-address is told `delete` for it)."""
        side = self.server_side
        side.pop(mac, None)
        if len(side) >= SERVER_SIDE_MAX:
            self.server_side = side = {m: t for m, t in side.items() if now - t < MOVE_IDLE}
            if len(side) >= SERVER_SIDE_MAX:
                side.clear()
        side[mac] = now
        rec = self.macs.drop(mac)
        if rec is not None:
            self.stats[SERVER_SIDE] += 1
            if self.unlearn is not None:
                self.unlearn(rec, mac)

    # ---------------------------------------------------------------- TAP -> clients
    def from_tun(self, pkts: list, now: float, sends: dict) -> None:
        """Frames from the TAP device to the clients holding their destination MACs, broadcast and
        multicast to every client (of their VLAN); each client's share sealed in one call.

        Why in two steps: sealing frame by frame paid the per-packet Python calls around each seal
        (as the TUN paths did before encrypt_many). The switch still decides frame by frame, in
        the batch's order, with every rule as before -- vlan-accept and the tag checks, the
        source MAC taken for the server side (a client losing it at once, so a later frame of the
        batch to that MAC is no longer that client's), unknown unicast dropped, the MSS clamp --
        and only the sealing waits: each client's frames, a broadcast's copy among them, are
        gathered in the batch's order and sealed by datapath.seal_shares. Nothing a seal does changes a
        later decision (which clients are established, alive, on which VLAN, or hold which MAC).
        The per-frame result is the same frames to the same clients in the same order
        (tests/engine/test_l2switch_batch.py)."""
        owner = self.macs.owner
        side = self.server_side
        stats = self.stats
        vlans, vid, vb = self.vlans, 0, b""
        groups: dict[int, list[ClientRecord]] = {}     # VLAN -> its clients, for this batch's broadcasts
        shares: dict[int, tuple[ClientRecord, list]] = {}   # id(client) -> (it, its frames in order)
        for p in pkts:
            if len(p) < ETH_HLEN:
                stats["frame too short"] += 1
                continue
            if vlans is not None:
                got = vlans.from_tap(p)
                if got is None:
                    stats[VLAN_REFUSED] += 1
                    continue
                p, vid = got
                if client_tagged(p):
                    # A client is an access port both ways (stricter than 2.6, which delivers
                    # it): a second tag would be a VLAN in a bridging client's own site.
                    stats[VLAN_INNER] += 1
                    continue
                vb = vid.to_bytes(2, "big")
            src = bytes(p[6:12]) + vb
            seen = side.get(src)
            if seen is None or now - seen >= REFRESH:
                self._saw_server_side(src, now)
            if p[0] & 1:
                group = groups.get(vid)
                if group is None:
                    group = groups[vid] = self._others(None, vid)
                if group and self.bcast.allow_device(now, len(group)):   # (the server-wide budget)
                    for rec in group:                  # (2.6: no mssfix on broadcasts)
                        share(shares, rec, p)
                continue
            rec = owner.get(bytes(p[0:6]) + vb)
            if rec is None or not rec.alive or not rec.session.established:   # (alive: see reconcile)
                stats["no route"] += 1
                continue
            p = self._clamp(p, rec.session)
            g = shares.get(id(rec))                    # (share(), written out: once per frame)
            if g is None:
                shares[id(rec)] = (rec, [p])
            else:
                g[1].append(p)
        if shares:
            seal_shares(shares, now, sends, self.d.note_sent, self.failed)

    # ---------------------------------------------------------------- both
    def _clamp(self, p, s):
        """A TCP SYN inside an IPv4/IPv6 frame, its MSS lowered (a copy when `p` is read-only):
        the tap client's own MssPolicy.clamp_frame, which looks behind one 802.1Q tag as 2.6's
        is_ipv_X does for the server too (process_ip_header, both directions)."""
        return self.mss.clamp_frame(p, s)
