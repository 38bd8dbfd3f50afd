"""The point-to-point tls-server's second session: a new peer session that may replace the live one.

Why: OpenVPN 2.6's p2p tls-server keeps its tunnel while a new TLS session from the peer (the peer
restarted and lost its state, or it moved to another port with --float) is negotiated in a slot of
its own (ssl.c TM_UNTRUSTED), and moves it to the active slot only once it has authenticated. A
reset from anyone else, or a replayed one, then costs at most that slot: the live session and
its data keys are never touched by a packet that has not proved the peer's certificate. One
candidate at a time; a newer reset replaces it only once it is CANDIDATE_MIN_AGE old, so a stream
of resets cannot make us start a TLS handshake per datagram. A reset that fails tls-auth/tls-crypt
never becomes (nor displaces) the candidate, as 2.6 checks it (read_control_auth) before it takes
the slot: otherwise a stranger without the key, one junk reset a second, keeps the peer out.
And the live peer's own address, once its session has authenticated it (a p2p tls-client binds its port: a restarted peer comes back
from there) displaces a young candidate from elsewhere: else resets from other ports (replays of
a captured one pass the key check) would hold the slot for good. Never one from that address, so
even a spoofed flood starts at most two handshakes per CANDIDATE_MIN_AGE.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from ..openvpn import events as ev
from ..openvpn.datapath import ClientDataPath
from ..openvpn.session import Session
from ..transport.p2p_link import P2PListenLink, is_client_reset, same_addr

log = logging.getLogger(__name__)

CANDIDATE_MIN_AGE = 1.0      # seconds before a newer reset may replace the candidate
LOG_EVERY = 60.0             # at most one line per this many seconds about refused candidates


@dataclass
class Candidate:
    addr: tuple
    session: Session
    dp: ClientDataPath
    since: float


class TakeOver:
    """Runs the candidate session beside the live one (`make` builds a fresh server session)."""

    def __init__(self, make, mss_rule, gate) -> None:
        self.make = make
        self.rule = mss_rule
        self.gate = gate             # a wrapper of the sessions' kind: a reset's tls-auth/tls-crypt check
        self.cand: Candidate | None = None
        self.failed = 0              # candidates that never authenticated (counted; logged at a rate)
        self._logged_at = float("-inf")

    def feed(self, link: P2PListenLink, items: list[tuple[bytes, tuple]], now: float) -> Candidate | None:
        """The packets the link set aside; the candidate once it is established (the caller swaps)."""
        for data, src in items:
            cand = self.cand
            if is_client_reset(data) and (cand is None or not same_addr(src, cand.addr)
                                           or bytes(data[1:9]) != cand.session.peer_sid):
                if cand is not None and now - cand.since < CANDIDATE_MIN_AGE and not cand.session.closed \
                        and not (link.proven and link.is_peer(src) and not link.is_peer(cand.addr)):
                    continue                 # one TLS handshake at a time, however many resets come
                if not self._authentic(data):
                    continue                 # no key: it takes no slot and answers nothing
                self.drop(link)
                s = self.make(now)
                self.cand = cand = Candidate(src, s, ClientDataPath(s, self.rule), now)
                link.candidate = (src, bytes(data[1:9]))
            if cand is None or not same_addr(src, cand.addr):
                continue
            try:
                cand.dp.open(data, now)       # no data yet: its keys come with the takeover
            except Exception as e:  # noqa: BLE001 - the candidate's fault or our bug: it alone ends
                self._refused(link, f"{e}")
                continue
            up = self._after(link, now)
            if up is not None:
                return up
        return None

    def _authentic(self, data: bytes) -> bool:
        """The reset passes the control channel's protection (always, without tls-auth/tls-crypt).
        Stateless (no replay window touched): the candidate's own wrapper checks it again."""
        try:
            self.gate.unwrap_untrusted(data, 0.0, check_replay=False)
        except Exception:  # noqa: BLE001 - BadPacket, or whatever a malformed packet raises
            self.failed += 1
            return False
        return True

    def timer(self, link: P2PListenLink, now: float) -> Candidate | None:
        if self.cand is None:
            return None
        try:
            self.cand.session.handle_timer(now)
        except Exception as e:  # noqa: BLE001 - as in feed
            self._refused(link, f"{e}")
            return None
        return self._after(link, now)

    def deadline(self) -> float | None:
        return self.cand.session.next_deadline() if self.cand is not None else None

    def _after(self, link: P2PListenLink, now: float) -> Candidate | None:
        cand = self.cand
        assert cand is not None
        s = cand.session
        link.send_packets(s.take_outgoing(), cand.addr)
        for e in list(s.events):
            if isinstance(e, ev.SessionClosed):
                self._refused(link, e.reason)
                return None
            if isinstance(e, ev.TunnelUp):
                self.cand = None
                link.candidate = None
                return cand
        # Keep only what the live path does not need until the takeover (its log lines).
        return None

    def _refused(self, link: P2PListenLink, why: str) -> None:
        cand, self.cand = self.cand, None
        link.candidate = None
        if cand is None:
            return
        self.failed += 1
        if cand.since - self._logged_at >= LOG_EVERY:
            self._logged_at = cand.since
            log.warning("p2p: a new session from %s did not authenticate (%s); the live one stays "
                        "(%d such so far)", cand.addr[0], why, self.failed)
        cand.session.release()

    def drop(self, link: P2PListenLink) -> None:
        cand, self.cand = self.cand, None
        link.candidate = None
        if cand is not None:
            cand.session.release()
