"""management-client-auth: logins decided by a management client, as OpenVPN 2.6 asks it.

Each login (the first key, and each renegotiation with a password rather than an auth-gen-token
token, as OpenVPN skips it for a valid token) is announced as `>CLIENT:CONNECT,CID,KID` (or
`>CLIENT:REAUTH,CID,KID` once the client is established) with its environment, the password
included, and waits for `client-auth CID KID` + config lines + `END`, `client-auth-nt CID KID`
or `client-deny CID KID "reason" ["client reason"]`. KID counts this client's announced logins
from 0 (OpenVPN's mda_key_id). A password file or auth-user-pass-verify command, if the config
also has one, is asked at the same time: both must say yes, and the first no decides. The config
lines of client-auth are applied as a client-connect script's would be (ccd syntax), at the
client's first login only. A verdict for a login that is over (its key timed out at hand-window,
the client left) answers `ERROR: client-auth command failed`, as OpenVPN's does; one for a login
already let in answers SUCCESS, as there: client-auth again changes nothing, and client-deny
ends the client's session (the management client has withdrawn its yes). Any verdict on a login
refused (by client-deny, the password file or command) within DENIED_ANSWERED s answers SUCCESS
and changes nothing -- 2.6 answers so while it keeps the refused instance (5 s), ERROR after
(helper authq48, measured; mgmt42 had a second client-deny SUCCESS for good and client-auth after
a denial ERROR). 2.6 sends the later client reason if its AUTH_FAILED is not out yet, ours went
with the first verdict; its client-auth then marks the key let in again, and its
client-pending-auth tells the refused client AUTH_PENDING: not copied, a denial is final here
and a refused client is told nothing more. A late answer names its login by (CID, KID), which no other login ever
has: CIDs only grow, and a client's KIDs only grow while its CID lives (a restart in place keeps
the CID and takes a new KID; a reload taking management-client-auth away and back keeps the
counts: `resumed`), so it can reach no newer session of that client (helper authq48;
its texts for a gone CID, a KID never given and KID 0 compared with Debian's 2.6.14: KID 0 of a
live client is SUCCESS with nothing done, as there -- ops.py _cid_alive).
"""
from __future__ import annotations

from dataclasses import dataclass, field

MAX_WAITING = 4096          # logins waiting for a verdict, all clients together
DENIED_KEPT = 1024          # denied logins a late verdict answers SUCCESS for (CIDs are never reused)
# ... for this long after the refusal: OpenVPN 2.6 keeps a refused client's instance scheduled_exit
# (5 s: forward.c schedule_exit) and answers any verdict on its logins meanwhile SUCCESS, doing
# nothing; then ERROR (measured against Debian's 2.6.14: client-auth-nt, client-deny and
# client-pending-auth 0-1 s after an auth-user-pass-verify refusal SUCCESS, 7 s after ERROR).
DENIED_ANSWERED = 5.0


@dataclass
class Waiting:
    """One login waiting: `checked` is the password file's or command's verdict (None: not yet;
    True when there is no such check), `mgmt` the management client's."""
    rec: object
    key_id: int
    check: object                   # the AuthRequested's request (a key id is reused later)
    cid: int
    kid: int
    checked: bool | None
    mgmt: bool | None = None
    client_reason: str = ""
    why: str = ""
    config: list[str] = field(default_factory=list)


FIRST_KID = 1


class ClientAuthWait:
    """The logins waiting for a management verdict, by (CID, KID) and by (record, key)."""

    def __init__(self) -> None:
        self.by_ckid: dict[tuple[int, int], Waiting] = {}
        self.kids: dict[int, int] = {}              # CID -> the next KID
        self.spare: dict[int, int] = {}             # CID -> the KID a restart takes (see add)
        self.let_in: dict[tuple[int, int], object] = {}   # (CID, KID) -> record: logins let in, the last 2 per client
        self.denied: dict[tuple[int, int], float] = {}    # logins denied -> when, the last DENIED_KEPT (oldest first)

    def add(self, rec: object, key_id: int, check: object, cid: int, check_pending: bool,
            restart: bool = False) -> Waiting | None:
        """A new login of client `cid` on engine key `key_id`; None when too many wait (the
        caller refuses it for now). An older login of the same key is dropped (replaced).
        `restart`: the login of a new session of client `cid` from its address (ops.created)."""
        for k, w in list(self.by_ckid.items()):
            if w.rec is rec and w.key_id == key_id:
                del self.by_ckid[k]
        if len(self.by_ckid) >= MAX_WAITING:
            return None
        # As OpenVPN 2.6 numbers them (KID: its key states, numbered from 0 as they are made):
        # the first login's is 1 (seen in the lab: tls_multi_init_finalize makes TM_ACTIVE's, then
        # TM_INITIAL's, which the handshake runs on); once it is in, 2.6 makes a fresh TM_INITIAL
        # one (move_session), so the first renegotiation's REAUTH is 3, then one more each time
        # (key_state_soft_reset; seen in the lab: CONNECT,0,1 then REAUTH,0,3 and REAUTH,0,4).
        # A restart (a new TLS session of the same 2.6 instance) runs on the TM_INITIAL key state
        # made when the first login got in, so it takes the KID skipped then (2 at first, seen in
        # the lab: CONNECT,0,1 then, restarted from the same address, REAUTH,0,2); TM_INITIAL
        # gets a fresh key state (the next KID) when it is in.
        nxt = self.kids.get(cid, FIRST_KID)
        spare = self.spare.get(cid)
        if nxt == FIRST_KID:
            kid, self.kids[cid], self.spare[cid] = nxt, nxt + 2, nxt + 1
        elif restart and spare is not None:
            kid, self.kids[cid], self.spare[cid] = spare, nxt + 1, nxt
        else:
            kid, self.kids[cid] = nxt, nxt + 1
        w = Waiting(rec, key_id, check, cid, kid, None if check_pending else True)
        self.by_ckid[(cid, kid)] = w
        return w

    def for_key(self, rec: object, key_id: int, check: object) -> Waiting | None:
        """The login waiting for request `check` of key `key_id` (not a later one of that key id)."""
        for w in self.by_ckid.values():
            if w.rec is rec and w.key_id == key_id and w.check is check:
                return w
        return None

    def take(self, w: Waiting, let_in: bool = False, now: float = 0.0) -> None:
        self.by_ckid.pop((w.cid, w.kid), None)
        if let_in:
            self.let_in[(w.cid, w.kid)] = w.rec
            self.let_in.pop((w.cid, w.kid - 2), None)
        else:
            self.denied[(w.cid, w.kid)] = now
            while len(self.denied) > DENIED_KEPT:
                del self.denied[next(iter(self.denied))]

    def forget(self, rec: object, cid: int | None) -> None:
        """The client is gone: its waiting logins and its KID counter."""
        for k, w in list(self.by_ckid.items()):
            if w.rec is rec:
                del self.by_ckid[k]
        for k, r in list(self.let_in.items()):
            if r is rec:
                del self.let_in[k]
        if cid is not None:
            self.kids.pop(cid, None)
            self.spare.pop(cid, None)

    def resumed(self, alive) -> "ClientAuthWait":
        """management-client-auth back after a reload took it away (a reload keeps the clients):
        the KID counts of the clients still here (`alive(cid)`) go on, so that no login of theirs
        is numbered as one of their earlier ones -- begun at 1 again, a renegotiation was
        REAUTH,CID,1, its first login's pair, which a late answer for that login decided
        (review48c). What was kept of the clients gone meanwhile (unseen: `forget` ran for
        none while it was away) is dropped."""
        for cid in [cid for cid in self.kids if not alive(cid)]:
            self.kids.pop(cid, None)
            self.spare.pop(cid, None)
        for k in [k for k, rec in self.let_in.items() if not getattr(rec, "alive", False)]:
            del self.let_in[k]
        return self

    def recently_denied(self, cid: int, kid: int, now: float) -> bool:
        """Login (cid, kid) was refused within DENIED_ANSWERED s: a verdict on it now is
        answered SUCCESS and does nothing, as 2.6 answers it while the refused instance lasts
        (a second client-deny, a late client-auth, client-pending-auth); later, ERROR."""
        at = self.denied.get((cid, kid))
        return at is not None and now - at < DENIED_ANSWERED

    @staticmethod
    def decided(w: Waiting) -> bool | None:
        """The login's verdict once known: no as soon as either says no, yes when both said yes."""
        if w.checked is False or w.mgmt is False:
            return False
        if w.checked and w.mgmt:
            return True
        return None
