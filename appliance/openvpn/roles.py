"""What differs between the client and the server end of a Session.

Why: the session's state machine (keys, reliability, timers) is the same for both ends; what a
role adds is who speaks first, what goes into the key-method message, and which text messages it
understands. Session holds one of these and asks `is_client` only for the direction of key
material and wire encodings (which half of a key block is ours), so each role reads top to bottom
here instead of as if/else branches through the state machine.

Role objects keep no state of their own: everything lives on the Session (its public fields are
what the gateways read: `pushed`, `peer_common_name`, `peer_info`, ...).
"""
from __future__ import annotations

import hmac
import re
import unicodedata
from typing import TYPE_CHECKING

from . import events as ev
from . import ciphers
from .ciphers import is_supported
from .compression import STUB_PEER_INFO, pushed_compression
from .errors import BadPacket, ClientRefused, PushDeferred, PushError, RemoteProtocolError
from .gentoken import TokenPolicy, Verdict, is_token
from .keymethod import (USER_PASS_TOO_LONG, KeyMethod2, PushRejected, build_push_reply, credential_as_sent,
                        iv_proto, parse_push_reply_untrusted)
from .keys import EKM_LABEL, KEY_BLOCK_LEN
from .keystate import KS, KeyState
from .opcodes import (HARD_RESET_CLIENT_OPS, IV_PROTO_AUTH_PENDING_KW, IV_PROTO_CC_EXIT_NOTIFY, IV_PROTO_DATA_V2,
                      IV_PROTO_REQUEST_PUSH, IV_PROTO_TLS_KEY_EXPORT, OCC_EXIT, OCC_MAGIC, Op)
from .peernames import to_bytes
from .pushedsignal import PushedSignal, parse_pushed_signal

if TYPE_CHECKING:
    from .session import Session

PUSH_REQUEST_INTERVAL = 2.0
# The first PUSH_REQUEST waits this long after the server's key-method message: a server from 2.5
# on pushes unasked to a client announcing IV_PROTO_REQUEST_PUSH (ours does) as soon as its key
# state is active, so asking at once only cost both ends a message and an ACK on the way to the
# first packet. OpenVPN 2.6's client asks only at its 1 s check for an established connection;
# servers that wait to be asked (2.4) hear from us after this, not a second.
PUSH_REQUEST_FIRST = 0.25
TUN_MTU_MAX_DEFAULT = 1600  # OpenVPN 2.6's tun-mtu-max: the most a server may push (or the profile's tun-mtu)
REPULLS = 5                 # PUSH_REQUESTs after a new TLS session at most (see got_key_method)
# IV_PROTO_AUTH_PENDING_KW: we read AUTH_PENDING's `timeout N` (ClientRole._auth_pending).
IV_PROTO_CLIENT = (IV_PROTO_DATA_V2 | IV_PROTO_REQUEST_PUSH | IV_PROTO_TLS_KEY_EXPORT | IV_PROTO_CC_EXIT_NOTIFY
                   | IV_PROTO_AUTH_PENDING_KW)
MAX_SERVER_INFO = 16        # INFO/INFO_PRE/AUTH_PENDING events per session; more are only counted
_PENDING_TIMEOUT = re.compile(r"timeout (\d{1,9})")   # AUTH_PENDING's keyword; compiled at start, not mid-handshake


def _shown(text: str) -> str:
    """A server's text for the user (INFO, INFO_PRE's web login URL, AUTH_PENDING's keywords)
    with Unicode format and separator characters escaped as `\\uXXXX` (control characters
    already are): a right-to-left override made `https://evil.example/\\u202emoc.knab` read as
    `.../bank.com`, and U+2028 starts a new line in some log viewers."""
    if text.isascii():
        return text
    return "".join(f"\\u{ord(ch):04x}" if unicodedata.category(ch) in ("Cf", "Zl", "Zp") else ch for ch in text)


def _c_int(text: str) -> int:
    """What glibc's sscanf("%d") stores for `text` that matched `\\s*[+-]?\\d+` at its start:
    strtol's value (saturated at the 64-bit long's bounds), cut to a 32-bit int."""
    v = max(min(int(text), 2**63 - 1), -2**63)
    v &= 0xFFFFFFFF
    return v - 2**32 if v >= 2**31 else v


# sscanf's " %d" after "backoff": C's white space, a sign, ASCII digits. re.ASCII: Python's \s and
# \d took U+00A0 and any script's digits ('backoff \u00a0300', 'backoff ３００'), a 300 s wait for
# ours where 2.6.14's sscanf reads no number and waits connect-retry's pause (review50f).
_BACKOFF_N = re.compile(r"\s*([+-]?\d+)", re.ASCII)


def _temp_flags(flags: str) -> tuple[bool, bool, int]:
    """AUTH_FAILED,TEMP's flags (`TEMP[backoff 42,advance remote]: text`): whether the client
    moves on, whether it skips the other addresses of the remote's name too, and the server's
    backoff in seconds (0: none), the least wait before the next attempt. As OpenVPN 2.6
    (push.c receive_auth_failed sets no_advance, options_util.c parse_auth_failed_temp reads
    the flags, the last of a kind winning; init.c socket_restart_pause waits at least the
    backoff, at most connect-retry's maximum): the same server again unless `advance addr`
    (the name's next address, or the next remote after its last) or `advance remote` (the next
    remote, the name's other addresses skipped: next_connection_entry's advance_next_remote).
    The flags are the text between `[` and the first `]`, split at `[` and `,` (strtok: empty
    ones skipped) and compared as they are -- a flag with a space before or after it is unknown
    to 2.6 (` backoff 30`, `advance remote `), and we took it after trimming (fuzz50): the two
    ends of a refusal must agree on the wait. `backoff N` is read as sscanf("backoff %d"):
    whitespace after the word, an optional sign, the digits, anything after ignored; no number,
    or a negative one, no backoff."""
    if not flags.startswith("[") or "]" not in flags:
        return False, False, 0
    advance, skip, backoff = False, False, 0
    for t in flags[1:flags.index("]")].replace("[", ",").split(","):
        if t.startswith("backoff "):
            m = _BACKOFF_N.match(t, len("backoff"))
            backoff = max(_c_int(m.group(1)), 0) if m else 0
        elif t in ("advance remote", "advance addr"):
            advance = True
            skip = skip or t == "advance remote"       # 2.6 clears advance_next_remote only when used
        elif t == "advance no":
            advance = False
    return advance, skip and advance, backoff


class ClientRole:
    is_client = True
    name = "tls-client"

    def __init__(self, s: "Session") -> None:
        self.s = s

    def start(self, now: float) -> None:
        """Send the first hard reset."""
        s = self.s
        ks = s._new_key_state(0, now)
        op = Op.CONTROL_HARD_RESET_CLIENT_V3 if s.cfg.early_negotiation else Op.CONTROL_HARD_RESET_CLIENT_V2
        ks.reliable.enqueue(op, b"")

    def first_packet_ok(self, op: int) -> bool:
        return op == Op.CONTROL_HARD_RESET_SERVER_V2

    def opens_first_key(self, op: int, key_id: int) -> bool:
        return False           # our own start() made key 0

    def reset_payload(self) -> bytes:
        return b""

    def tls_done(self, ks: KeyState) -> None:
        self.s._send_key_method(ks)        # the client's key-method message goes first

    def fill_key_method(self, km: KeyMethod2) -> None:
        s = self.s
        km.pre_master = s.cfg.random_bytes(48)
        cfg = s.cfg
        user, pw = cfg.username, cfg.password
        if cfg.credentials is not None and not s.token.in_use:
            user, pw = cfg.credentials()        # auth-nocache: fetched now, kept by no one after
        creds = s.token.credentials(user, pw)
        if creds is not None:
            # Control characters dropped, as OpenVPN 2.6's client does: a server that took a
            # password from Debian's client knows it without them (its own server would pass a
            # tab on to a script as `_`).
            km.username, km.password = (credential_as_sent(c) for c in creds)
        km.peer_info = self._peer_info()

    def _peer_info(self) -> str:
        cfg = self.s.cfg
        proto = IV_PROTO_CLIENT if cfg.advertise_ekm else IV_PROTO_CLIENT & ~IV_PROTO_TLS_KEY_EXPORT
        lines = [
            "IV_VER=2.6.0", "IV_PLAT=linux", f"IV_PROTO={proto}", "IV_NCP=2",
            "IV_CIPHERS=" + ":".join(cfg.data_ciphers), f"IV_MTU={max(cfg.tun_mtu, TUN_MTU_MAX_DEFAULT, cfg.tun_mtu_max)}", "IV_TCPNL=1",
        ]
        if not any(x.startswith("IV_GUI_VER=") for x in cfg.peer_info_extra):
            lines.append("IV_GUI_VER=vpn-appliance_0.1")       # ours, unless the profile names its own
        # (a session made without a parsed profile: 2.6's lines for one without a compression line)
        lines += cfg.comp_peer_info if cfg.comp_peer_info is not None else STUB_PEER_INFO
        return "\n".join([*lines, *cfg.peer_info_extra]) + "\n"

    def auth_result(self, key_id: int, ok: bool, now: float, temporary: bool = False, client_reason: str = "",
                    why: str = "", check: object = None) -> None:
        """Only servers check passwords."""

    def got_key_method(self, ks: KeyState, km: KeyMethod2, now: float) -> None:
        s = self.s
        if ks.key_id == 0 and not s.established:
            ks.phase = KS.PUSH
            s.next_push_request = now + PUSH_REQUEST_FIRST   # the server pushes unasked (see above)
            if s.cfg.advertise_ekm and ks.tls is not None:
                # The TLS-EKM key block now, while the server builds its push (it says only
                # whether the block is used: OpenVPN 2.6 uses it when we offer it), not between
                # PUSH_REPLY and the first data packet (~20-40 us there; README, firstpkt49).
                # The same bytes: the export depends on the TLS session alone.
                try:
                    ks.ekm_block = ks.tls.export_keying_material(EKM_LABEL, KEY_BLOCK_LEN)
                except Exception:  # noqa: BLE001 - not here: the push's export raises it as before
                    ks.ekm_block = None
        else:
            # (a new TLS session after a failed renegotiation too: the push of the first one
            # stands; OpenVPN's server pushes again unasked to a client announcing
            # IV_PROTO_REQUEST_PUSH, when it is not within 30 s of its last push, and only the
            # auth-token of that is taken, as for any push after the tunnel is up)
            s._install_keys(ks, now)
            if ks.key_id == 0 and s.lame_session_key is not None:
                # OpenVPN 2.6's server sets up the new session's data keys only in a pass of its
                # TLS code after it has run its client-connect step again (~1 s later, ssl.c
                # tls_multi_process, CAS_CONNECT_DONE), and such a pass comes with the next
                # control packet or its TLS timer: without its push (within 30 s of the last)
                # that was our next renegotiation, and our data was refused until then ("AEAD
                # Decrypt error"; seen in about half the lab runs). So, as at the start, we
                # send PUSH_REQUEST every PUSH_REQUEST_INTERVAL until the server's data comes on
                # the new key (a few times at most); a server that already pushed ignores it.
                s.repulls_left = REPULLS
                s.next_push_request = now + PUSH_REQUEST_INTERVAL

    def keys_installed(self, ks: KeyState) -> None:
        self.s._set_established()

    def text_message(self, ks: KeyState, text: str, now: float) -> None:
        s = self.s
        if text.startswith("PUSH_REPLY"):
            if s.established:
                s.repulls_left = 0
                # A duplicate answer to a repeated PUSH_REQUEST, or OpenVPN 2.6's auth-token
                # renewal (auth-gen-token pushes `auth-token` alone at each renegotiation and
                # refuses a token older than twice its renewal time): only the token is taken.
                self._renewed_token(text)
                return
            try:
                s.pushed = parse_push_reply_untrusted(text, s.pushed, s.cfg.pull_filter, s.cfg.route_nopull)
            except PushRejected as e:
                s._fail(e.reason, restart=True)
                return
            except BadPacket as e:
                raise PushError(f"bad PUSH_REPLY: {e.reason}") from None
            if s.pushed.complete:
                s.next_push_request = None
                self._apply_push(ks, now)
        elif text.startswith("AUTH_FAILED"):
            # Only `AUTH_FAILED,<reason>` carries a reason (TEMP among them), as OpenVPN 2.6's
            # receive_auth_failed reads it: `AUTH_FAILEDTEMP` or `AUTH_FAILED,,TEMP` is a plain
            # refusal there (the run ends without auth-retry), and we took both for TEMP.
            msg = text[len("AUTH_FAILED,"):] if text.startswith("AUTH_FAILED,") else ""
            s.events.append(ev.AuthFailed(msg or "authentication failed"))
            # TEMP: try again later, token kept (as OpenVPN 2.6). Otherwise, with a token in use,
            # it is the token the server refused (expired, or a server restarted with another
            # token key): as OpenVPN 2.6, forget it and start over with the same server (the
            # new connection sends the password) instead of exiting.
            if msg.startswith("TEMP"):
                advance, skip, backoff = _temp_flags(msg[4:])
                s._fail(f"AUTH_FAILED {msg}".strip(), restart=True, same_remote=not advance, next_remote=advance,
                        backoff=backoff, skip_addresses=skip)
            elif s.token.take_auth_failed():
                s._fail(f"AUTH_FAILED {msg} (auth-token dropped)".strip(), restart=True, same_remote=True)
            else:
                # auth-retry nointeract: the same server again after the backoff, as OpenVPN 2.6
                # (push.c receive_auth_failed: SIGUSR1 with no_advance); none: the run ends.
                s._fail(f"AUTH_FAILED {msg}".strip(), restart=s.cfg.auth_retry, same_remote=s.cfg.auth_retry,
                        purge_auth=True)
        elif (sig := parse_pushed_signal(text)) is not None:
            self._pushed_signal(sig)
        elif text.startswith("EXIT"):
            s._fail("server exited (EXIT)", restart=True)
        elif text.startswith("AUTH_PENDING"):
            self._auth_pending(ks, text, now)
        elif text.startswith("INFO"):
            # INFO_PRE,<text> / INFO,<text>: for the user, e.g. WEB_AUTH::<url> of a web login
            # (OpenVPN 2.6's client: push.c server_pushed_info, to its log and management).
            kind, _, msg = text.partition(",")
            if kind in ("INFO", "INFO_PRE"):
                self._server_info(ev.ServerInfo(kind, _shown(msg)))
            else:
                s._warn(f"unknown control message: {text[:60]}")
        elif text.startswith("ACC"):
            s._warn(f"server message: {text[:200]}")
        else:
            s._warn(f"unknown control message: {text[:60]}")

    def _pushed_signal(self, sig: PushedSignal) -> None:
        """HALT ends the run; RESTART reconnects: to the next remote with the [N] flag, otherwise
        to the same server first once our tunnel was up there (OpenVPN 2.6's client sets its
        no_advance when its initialization completes and clears it only for [N]; a RESTART
        before that moves on, as any failed attempt)."""
        s = self.s
        if sig.halt:
            s._fail(sig.describe(), restart=False)
            return
        same = s.established and not sig.next_remote
        s._fail(sig.describe() + (": this server again" if same else ": next remote"), restart=True,
                same_remote=same, next_remote=sig.next_remote)

    def _auth_pending(self, ks: KeyState, text: str, now: float) -> None:
        """AUTH_PENDING[,timeout N]: the server checks our login out of band (a web login, a push
        to a phone) and will answer later. As OpenVPN 2.6's client (push.c receive_auth_pending):
        the wait becomes N seconds (hand-window without one), at most max(reneg-sec/2,
        hand-window), counted from the key's first AUTH_PENDING -- so a server repeating it
        cannot keep us waiting longer than that. Other keywords are ignored, as there."""
        s = self.s
        wait = s.cfg.hand_window
        _, _, keywords = text.partition(",")
        for kw in keywords.split(",") if keywords else ():
            m = _PENDING_TIMEOUT.fullmatch(kw.strip())
            if m:
                wait = int(m.group(1))
        wait = min(wait, max(s.cfg.reneg_sec // 2, s.cfg.hand_window))
        if not ks.negotiating or s.established:
            # Established: nothing waits on it. A renegotiation keeps its hand-window, as with
            # OpenVPN 2.6, whose AUTH_PENDING moves only the wait for the first push
            # (push_request_timeout): a server must not hold one open for reneg-sec/2.
            return
        if ks.auth_pending_at is None:
            ks.auth_pending_at = now
        ks.hand_deadline = ks.auth_pending_at + wait
        self._server_info(ev.AuthPending(wait, _shown(keywords)))

    def _server_info(self, e: object) -> None:
        """A message for the user, at most MAX_SERVER_INFO per session (a server repeating them
        must not fill our log); the rest are only counted."""
        s = self.s
        s.server_infos += 1
        if s.server_infos <= MAX_SERVER_INFO:
            s.events.append(e)

    def _renewed_token(self, text: str) -> None:
        s = self.s
        try:
            p = parse_push_reply_untrusted(text, None, s.cfg.pull_filter, s.cfg.route_nopull)
        except BadPacket as e:            # PushRejected too: nothing else of it applies anyway
            s._warn(f"push after the tunnel is up ignored: {e.reason}")
            return
        s.token.take(p.auth_token, p.auth_token_user)

    def _apply_push(self, ks: KeyState, now: float) -> None:
        s = self.s
        p = s.pushed
        assert p is not None
        cipher = p.cipher
        if cipher is None:
            cipher = s.cfg.data_ciphers_fallback
            if cipher is None:
                raise PushError("server pushed no cipher and no data-ciphers-fallback is set")
        if cipher not in s.cfg.data_ciphers and cipher != s.cfg.data_ciphers_fallback:
            raise PushError(f"server pushed cipher {cipher}, not in our data-ciphers")
        if not is_supported(cipher):
            raise PushError(f"server pushed unsupported cipher {cipher}")
        s.cipher = cipher
        s.ekm = p.tls_ekm
        s.cc_exit = p.cc_exit
        # As OpenVPN: renegotiations and reconnects authenticate with the token instead of the
        # password (which a one-time-password setup could not repeat).
        s.token.take(p.auth_token, p.auth_token_user)
        if p.peer_id is not None:
            s.peer_id = p.peer_id
        cap = max(s.cfg.tun_mtu, TUN_MTU_MAX_DEFAULT, s.cfg.tun_mtu_max)
        if p.tun_mtu is not None and p.tun_mtu > cap:
            # As OpenVPN 2.6 (init.c, "Server-pushed tun-mtu is too large"): a pushed tun-mtu goes
            # no higher than its tun-mtu-max (at least 1600 and the profile's tun-mtu); the server
            # set the TUN device to 65535, so the client's own packets into the tunnel (the
            # router's DNS forwarder, its answers to the tunnel) became outer datagrams the WAN
            # carries only as IP fragments.
            s._warn(f"server pushed tun-mtu {p.tun_mtu}, more than {cap}: that is used instead "
                    f"(add `tun-mtu-max {p.tun_mtu}` to the profile to allow it)")
            p.tun_mtu = cap
        if p.ping is not None:
            s.ping_interval = p.ping
        if p.ping_restart is not None:
            s.ping_restart = p.ping_restart
        if p.compress is not None or p.comp_lzo is not None:
            s.comp = pushed_compression(p.compress, p.comp_lzo, s.cfg.comp_stub_only)
        s._install_keys(ks, now)

    def exit_notification(self) -> None:
        """Nothing at close(): the client's notice is explicit-exit-notify's, sent and timed by
        the gateway through notify_exit (OpenVPN 2.6 sends none without the directive)."""

    def notify_exit(self, first: bool) -> bool:
        """One round of explicit-exit-notify, as OpenVPN 2.6's client (sig.c
        process_explicit_exit_notification_init / _timer_wakeup): `EXIT` on the control
        channel once (`first`) when the server negotiated cc-exit (the control channel
        retransmits it), otherwise one OCC exit per round on UDP (the gateway runs a round a
        second). False when nothing can go: no data keys yet, or over TCP (where OpenVPN ignores
        the directive)."""
        s = self.s
        if s.send_key is None or s.tcp:
            return False
        if s.cc_exit and s._text_key() is not None:
            if first:
                s._send_text("EXIT")
        else:           # (also when the key's TLS failed: the EXIT would go nowhere)
            s._queue_data(OCC_MAGIC + bytes((OCC_EXIT,)))
        return True

    def peer_exit_restarts(self) -> bool:
        return True            # the server went away: reconnect, as OpenVPN's SIGUSR1


# Challenge responses taken per key (a user retyping a code a few times, not a flood).
CR_RESPONSES = 8

# The reason OpenVPN 2.6 gives a client that force-tls-key-material-export refuses.
NO_SHARED_CIPHER = "Data channel cipher negotiation failed (no shared cipher)"     # 2.6's words (multi.c)
EKM_REQUIRED = ("Client incompatible with this server. Keying Material Exporters (RFC 5705) support missing. "
                "Upgrade to a client that supports this feature (OpenVPN 2.6.0+).")


class ServerRole:
    is_client = False
    name = "tls-server"

    def __init__(self, s: "Session") -> None:
        self.s = s

    def start(self, now: float) -> None:
        """The client speaks first."""

    def first_packet_ok(self, op: int) -> bool:
        return op in HARD_RESET_CLIENT_OPS

    def opens_first_key(self, op: int, key_id: int) -> bool:
        return op in HARD_RESET_CLIENT_OPS and key_id == 0 and not self.s.keys

    def reset_payload(self) -> bytes:
        return b""

    def tls_done(self, ks: KeyState) -> None:
        """We answer the client's key-method message; nothing to send yet."""

    def fill_key_method(self, km: KeyMethod2) -> None:
        """The server's message carries randoms and options only."""

    def got_key_method(self, ks: KeyState, km: KeyMethod2, now: float) -> None:
        s = self.s
        first = ks.key_id == 0 and not s.established
        if km.user_pass_too_long:
            # As OpenVPN 2.6 (key_method_2_read): refused with its reason, whether this server
            # checks passwords or not; the bytes go nowhere (keymethod.KEY_METHOD_READ).
            self._auth_failed(ks, first, USER_PASS_TOO_LONG)
            return
        if first and s._restart_of is not None and s._restart_of[2] is not None \
                and km.username != s._restart_of[2]:
            # A restart of an established client (Session.lock_identity_of): its username too.
            raise ClientRefused(f"TLS Auth Error: username attempted to change from "
                                f"{s._restart_of[2]!r} to {km.username!r}")
        if first:
            s.peer_info = km.peer_info_dict()
            # As OpenVPN 2.6 (ssl.c, remote_usescomp): this exact word of its options string.
            s.peer_uses_comp = s.cfg.comp_migrate and ",comp-lzo," in km.options
            s.peer_occ_cipher = ciphers.occ_cipher(km.options)
        elif s.peer_username is not None and km.username != s.peer_username:
            # As OpenVPN (ssl_verify.c tls_lock_username): a username a check locked may not
            # change on renegotiation, and the password is checked again, unless it is the
            # auth-token we handed out. Without a check nothing was locked (see _accept).
            raise ClientRefused(f"TLS Auth Error: username attempted to change from "
                                f"{s.peer_username!r} to {km.username!r}")
        checks = self._checks_users()
        grace, s.token_grace = s.token_grace, None
        if checks and not first and grace is not None and grace[0] in (None, ks) and s.cfg.gen_token is not None \
                and not s.cfg.token_external \
                and hmac.compare_digest(to_bytes(km.password), to_bytes(grace[1])):
            self._grace_token(ks, km, now)
            return
        if checks and s.cfg.gen_token is not None and is_token(km.password):
            if s.cfg.token_external and s.cfg.defer_auth:
                self._token_to_command(ks, km)
            else:
                self._check_token(ks, km, first, now)
            return
        if checks and (first or not self._token_ok(km.password)):
            if s.cfg.defer_auth:
                # The check is slow (scrypt): the caller runs it off its event loop and answers
                # with Session.auth_result; until then this key waits (hand-window still runs).
                ks.pending_auth = km
                state = sid = None
                if s.cfg.gen_token is not None:
                    state, sid = "Initial", self._session_id(km.username)
                s.events.append(ev.AuthRequested(ks.key_id, km.username, km.password, s.peer_common_name,
                                                 state, sid, check=km))
                return
            if not s.cfg.verify_user(km.username, km.password, s.peer_common_name):
                self._auth_failed(ks, first)
                return
        self._accept(ks, km, first, now)

    def auth_result(self, key_id: int, ok: bool, now: float, temporary: bool = False, client_reason: str = "",
                    why: str = "", check: object = None) -> None:
        """The answer to an AuthRequested: go on with the handshake of that key, or refuse; a
        `temporary` refusal (the checker was too busy to check) says AUTH_FAILED,TEMP, so the
        client retries later instead of giving up. A refusal's `client_reason` (an
        auth-user-pass-verify command's auth_failed_reason_file) is sent as AUTH_FAILED,<it>."""
        s = self.s
        ks = s.keys.get(key_id)
        if ks is None or ks.pending_auth is None or (check is not None and ks.pending_auth is not check):
            # That key is gone (timed out, replaced), or this verdict is an earlier request's: a
            # client may open a key id again once its negotiation failed at hand-window, while
            # a command's deferred verdict may come up to twice that late; the earlier
            # password's yes decided the later one's.
            return
        km, ks.pending_auth = ks.pending_auth, None
        first = key_id == 0 and not s.established
        if not ok and temporary:
            self.refuse(ks, f"password not checked (client told to retry): {why}" if why else
                        "password not checked: the server is busy (client told to retry)", temporary=True)
            return
        if not ok:
            self._auth_failed(ks, first, client_reason, why)
            return
        self._accept(ks, km, first, now)

    def _checks_users(self) -> bool:
        """Whether this server checks usernames/passwords (a verify command, passdb, PAM, a
        plugin, management-client-auth): OpenVPN 2.6's tls_session_user_pass_enabled."""
        return self.s.cfg.verify_user is not None or self.s.cfg.defer_auth

    def _accept(self, ks: KeyState, km: KeyMethod2, first: bool, now: float) -> None:
        s = self.s
        if s.peer_username is None and self._checks_users():
            # As OpenVPN 2.6 (verify_user_pass -> tls_lock_username): the username is the
            # session's once a check passed it, and only then: without a check 2.6 never reads
            # it, so the status says UNDEF, scripts get no `username`, a renegotiation may send
            # another. (A reload that adds a check locks the one of the next renegotiation.)
            s.peer_username = km.username
        if first:
            # (its data cipher: chosen at the push, after its per-client lines -- send_push_reply)
            proto = iv_proto(s.peer_info)
            s.ekm = s.cfg.server_ekm and bool(proto & IV_PROTO_TLS_KEY_EXPORT)
            if s.cfg.require_ekm and not s.ekm:
                # As OpenVPN 2.6 (multi.c, multi_client_set_protocol_options): refused with its reason.
                s._count("client without TLS-EKM (force-tls-key-material-export)")
                self._auth_failed(ks, first, EKM_REQUIRED,
                                  why="the client does not derive keys with TLS-EKM (force-tls-key-material-export)")
                return
            s.cc_exit = bool(proto & IV_PROTO_CC_EXIT_NOTIFY)
            if not proto & IV_PROTO_DATA_V2:
                s.peer_id = None
            s.events.append(ev.ClientAuthenticated(s.peer_common_name, km.username, s.peer_info))
        if not ks.sent_km:                          # (pending auth sent it already)
            s._send_key_method(ks)
        s._install_keys(ks, now)
        if s.cfg.gen_token is not None and (s.cfg.verify_user is not None or s.cfg.defer_auth):
            # After each successful check (password or token), as OpenVPN's verify_user_pass: the
            # first goes with the push reply, a renegotiation's on the new key at once.
            self._issue_token(km.username, now, None if first else ks)
        if first and iv_proto(s.peer_info) & IV_PROTO_REQUEST_PUSH:
            self.send_push_reply(ks, now)

    def _check_token(self, ks: KeyState, km: KeyMethod2, first: bool, now: float) -> None:
        """auth-gen-token: a token in place of the password is checked here, not by the password
        file (OpenVPN 2.6's verify_user_pass without external-auth): its HMAC over this username,
        its age, and on a renegotiation that it belongs to this client's session."""
        s = self.s
        assert s.cfg.gen_token is not None and s.cfg.wall_clock is not None
        verdict = s.cfg.gen_token.verify(km.password, to_bytes(km.username), int(s.cfg.wall_clock()),
                                         s.token_initial)
        if verdict is Verdict.VALID and s.cfg.token_user_known is not None and not s.cfg.token_user_known(km.username):
            # Taken out of the password file (and the server reloaded): her token must not do
            # what her password no longer does. OpenVPN's SIGHUP gets there by a new ephemeral key.
            s._count("auth-token of a user not in the password file")
            self._auth_failed(ks, first, why="auth-token of a user not in the password file")
            return
        if verdict is not Verdict.VALID:
            s._count(f"auth-token {verdict.value}")
            # An expired token says so (AUTH_FAILED,SESSION:...): OpenVPN's client, and ours,
            # then drop it and log in with the password again; so do they on a plain AUTH_FAILED.
            self._auth_failed(ks, first, "SESSION: token expired" if verdict is Verdict.EXPIRED else "",
                              why=f"auth-token {verdict.value}")
            return
        if s.token_initial is None:
            s.token_initial = km.password           # a reconnect: its renewals keep that session id
        self._accept(ks, km, first, now)

    def _grace_token(self, ks: KeyState, km: KeyMethod2, now: float) -> None:
        """The renegotiation under way when a reload changed the token policy brought the token
        we issued this session before it (the client could not have had another): taken this
        once, and replaced by one under the new policy (_accept), as a session between
        renegotiations had its token replaced at the reload. Not for a user the reloaded
        password file dropped, nor past the new policy's lifetime or renewal window."""
        s = self.s
        assert s.cfg.gen_token is not None and s.cfg.wall_clock is not None
        if s.cfg.token_user_known is not None and not s.cfg.token_user_known(km.username):
            s._count("auth-token of a user not in the password file")
            self._auth_failed(ks, False, why="auth-token of a user not in the password file")
            return
        if s.cfg.gen_token.verify_times(km.password, int(s.cfg.wall_clock())) is not Verdict.VALID:
            s._count("auth-token expired")
            self._auth_failed(ks, False, "SESSION: token expired", why="auth-token expired")
            return
        s._count("auth-token of the policy before the reload (renegotiation under way)")
        self._accept(ks, km, False, now)

    def _token_to_command(self, ks: KeyState, km: KeyMethod2) -> None:
        """auth-gen-token external-auth (OpenVPN 2.6's auth_token_call_auth): the token is
        checked here, and its state goes with it to the auth-user-pass-verify command, which
        decides (it may let an expired token in, or keep a valid one out)."""
        s = self.s
        assert s.cfg.gen_token is not None and s.cfg.wall_clock is not None
        verdict = s.cfg.gen_token.verify(km.password, to_bytes(km.username), int(s.cfg.wall_clock()),
                                         s.token_initial)
        if verdict is not Verdict.INVALID and s.token_initial is None:
            # Its HMAC holds (valid or expired): a reconnect, whose tokens keep its session id and
            # start time if the command lets it in. Never an invalid token's (CVE-2026-13122,
            # OpenVPN's 423afa8e: a forged token must not choose the session id).
            s.token_initial = km.password
        if verdict is not Verdict.VALID:
            s._count(f"auth-token {verdict.value} (to the command)")
        sid = TokenPolicy.session_id(km.password) if verdict is Verdict.VALID else self._session_id(km.username)
        state = {Verdict.VALID: "Authenticated", Verdict.EXPIRED: "Expired"}.get(verdict, "Invalid")
        ks.pending_auth = km
        s.events.append(ev.AuthRequested(ks.key_id, km.username, km.password, s.peer_common_name, state, sid,
                                         check=km))

    def _session_id(self, username: str) -> str:
        """The session id this session's tokens carry, made now when it has none yet (OpenVPN
        2.6 generates the token at this point too: the command sees the id the client will get)."""
        s = self.s
        gen = s.cfg.gen_token
        assert gen is not None and s.cfg.wall_clock is not None
        if s.token_initial is None:
            s.token_initial = gen.issue(to_bytes(username), int(s.cfg.wall_clock()), None, s.cfg.random_bytes)
        return TokenPolicy.session_id(s.token_initial)

    def _issue_token(self, username: str, now: float, on: KeyState | None) -> None:
        """A new token for this client (the same session id and initial time after the first),
        sent on key `on` as OpenVPN sends a renewal ("PUSH_REPLY,auth-token ..."), or with the push
        reply when None. Renewed again after `renewal` seconds when that comes before reneg-sec."""
        s = self.s
        gen = s.cfg.gen_token
        assert gen is not None and s.cfg.wall_clock is not None
        token = gen.issue(to_bytes(username), int(s.cfg.wall_clock()), s.token_initial, s.cfg.random_bytes)
        if s.token_initial is None:
            s.token_initial = token
        s.issued_auth_token = token
        s.token_renew_at = now + gen.renewal if not s.cfg.reneg_sec or gen.renewal < s.cfg.reneg_sec else None
        if on is not None:
            s._send_text("PUSH_REPLY,auth-token " + token, on)

    def token_policy_changed(self, policy: TokenPolicy | None, external: bool, now: float) -> None:
        """A reload changed auth-gen-token (its secret, lifetime or renewal, or the directive
        itself): this kept session follows the new policy from now on, as a new one would.
        OpenVPN's SIGHUP gets there by disconnecting every client (and a new ephemeral key);
        here the tunnel stays, so its tokens are what must change:
        - a new policy re-issues this client's token under it at once (same session id and first
          login time, so a new lifetime counts from the first login): a token of the old secret
          is refused from now on -- rotating a leaked secret revokes its tokens -- and the
          client renegotiates on the new one without being asked for its password;
        - auth-gen-token taken out: the token issued here is forgotten, so the next
          renegotiation needs the password (the token sent then is checked as one, and fails),
          as for a session begun after the reload."""
        s = self.s
        if policy == s.cfg.gen_token and external == s.cfg.token_external:
            return
        had_token = s.cfg.gen_token is not None and s.issued_auth_token is not None
        s.cfg.gen_token, s.cfg.token_external = policy, external
        if policy is None:
            if had_token:
                s.issued_auth_token = s.token_initial = None
            s.token_renew_at = None
            return
        if not had_token or s.peer_username is None:
            return                  # no token yet: the next check issues one under the new policy
        ks = s._newest()
        if not s.push_sent:
            self._issue_token(s.peer_username, now, None)       # goes with the push reply
        elif ks is not None and ks.phase is KS.ACTIVE:
            old = s.issued_auth_token
            self._issue_token(s.peer_username, now, ks)
            # A renegotiation the client began before the new token reached it (its soft reset
            # crossing our PUSH_REPLY) brings the old one: the next key may use it once.
            s.token_grace = (None, old) if old is not None else None
        else:
            # A renegotiation is under way: its check issues the next token, under the new
            # policy; the timer is the fallback if that check does not come. The client sends
            # the token it has, ours of the old policy: that key may use it once (_grace_token),
            # or the reload would cut off whoever was renegotiating.
            s.token_renew_at = now
            if ks is not None and ks.remote_km is None:
                s.token_grace = (ks, s.issued_auth_token)

    def renew_token(self, now: float) -> None:
        """The renewal timer (auth-gen-token's renewal under reneg-sec), as OpenVPN's
        check_send_auth_token: skipped, and tried again a period later, while a key is being
        negotiated or before the client is admitted."""
        s = self.s
        assert s.cfg.gen_token is not None
        s.token_renew_at = now + s.cfg.gen_token.renewal
        ks = s._newest()
        if ks is None or ks.phase is not KS.ACTIVE or not s.push_sent or s.peer_username is None:
            return
        self._issue_token(s.peer_username, now, ks)

    def _token_ok(self, password: str) -> bool:
        tok = self.s.issued_auth_token
        return tok is not None and hmac.compare_digest(to_bytes(password), to_bytes(tok))

    def _auth_failed(self, ks: KeyState, first: bool, client_reason: str = "", why: str = "") -> None:
        """AUTH_FAILED (`client_reason`: the text after its comma, shown by the client), then close;
        `why`: the log's reason, when not the client's."""
        reason = (f"client refused: {why or client_reason}" if why or client_reason
                  else "client failed username/password authentication") + ("" if first else " on renegotiation")
        s = self.s
        if not ks.sent_km:
            s._send_key_method(ks)
        s._send_text("AUTH_FAILED," + client_reason if client_reason else "AUTH_FAILED", ks)
        s.told_refused = True
        s._fail(reason, restart=False)

    def keys_installed(self, ks: KeyState) -> None:
        """Established only once the options are pushed (send_push_reply)."""

    def text_message(self, ks: KeyState, text: str, now: float) -> None:
        s = self.s
        if text.startswith("PUSH_REQUEST"):
            if ks.phase is not KS.ACTIVE:
                # Not before _accept installed this key: its password may still be under check
                # (defer_auth), and a push now made the client established, ran client-connect
                # and leased it an address before the verdict. OpenVPN 2.6 defers such a
                # request too; the push goes once the key is accepted (the client asks again).
                s._count("push request before authentication")
                return
            self.send_push_reply(ks, now)
        elif text.startswith("EXIT"):
            s.hold_exit(now)            # ends EXIT_HOLD s later, as 2.6's schedule_exit
        elif text.startswith("CR_RESPONSE"):
            # As OpenVPN 2.6 (push.c receive_cr_response): the text after "CR_RESPONSE,", for the
            # management client deciding the login. At most CR_RESPONSES per key: each becomes
            # a notification with the client's whole environment, so a client repeating it
            # without end would make us write without end.
            ks.cr_responses += 1
            if ks.cr_responses > CR_RESPONSES:
                s._count("CR_RESPONSE beyond the limit per key")
                return
            s.events.append(ev.CrResponse(ks.key_id, text[12:] if text[11:12] == "," else ""))
        else:
            s._warn(f"unknown control message: {text[:60]}")

    def send_push_reply(self, ks: KeyState, now: float) -> None:
        s = self.s
        if s.push_sent:
            return
        opts: list[str] = []
        if s.cfg.push_options is not None:
            try:
                opts += s.cfg.push_options(s)      # may raise ClientRefused
            except PushDeferred:
                return                             # resumed by Session.resume_push

        if s.cipher is None and not self._choose_cipher(ks, now):
            return
        generated = s.cfg.gen_token is not None and s.token_initial is not None
        for o in opts:
            if o.startswith("auth-token ") and not generated:
                s.issued_auth_token = o.split()[1] if len(o.split()) > 1 else None
        if generated:
            opts.append(f"auth-token {s.issued_auth_token}")
        flags = ["cc-exit"] if s.cc_exit else []
        if s.ekm:
            flags.append("tls-ekm")
        if flags:
            opts.append("protocol-flags " + " ".join(flags))
        if s.peer_id is not None:
            opts.append(f"peer-id {s.peer_id}")
        opts.append(f"cipher {s.cipher}")
        for msg in build_push_reply(opts):
            s._send_text(msg, ks)
        s.push_sent = True
        s.events.append(ev.PushRequested())
        s._set_established()

    def _choose_cipher(self, ks: KeyState, now: float) -> bool:
        """The client's data cipher, chosen once its per-client lines (ccd file, client-connect
        output, client-auth block) are in -- they may set its data-ciphers and fallback -- and its
        data keys made with it, as OpenVPN 2.6.14 (multi.c multi_client_connect_late_setup:
        multi_client_set_protocol_options, then multi_client_generate_tls_keys). False: refused.
        compat48: ours chose at the end of the handshake, before those lines, and refused a
        client whose file chose another cipher -- one a reload kept on its file's cipher was
        refused at its next connect."""
        s = self.s
        cipher = s._negotiate_cipher()
        if cipher is None:
            # As OpenVPN 2.6.14 (multi.c multi_client_set_protocol_options): AUTH_FAILED with its
            # reason, the log saying both lists; no fallback for a client that named its ciphers
            # (ours gave it data-ciphers-fallback, which it then refused to use).
            s._count("no common data cipher")
            self._auth_failed(ks, True, NO_SHARED_CIPHER,
                              why="PUSH: " + ciphers.no_common(s.peer_info, s.ncp_lists()[0], s.peer_occ_cipher))
            return False
        if ciphers.spec(cipher) is None:
            # Only a per-client line names a cipher no check vetted (2.6 takes those lines as
            # written): 2.6 then fails the client's data channel ("TLS Error: initializing data
            # channel failed") and refuses it; so do we, naming the line.
            s._count("per-client data cipher not supported")
            self._auth_failed(ks, True, why=f"{s.client_ncp_where}: data cipher {cipher!r} chosen by the "
                              "client's per-client lines cannot be run here (OpenVPN 2.6 fails the client: "
                              "\"initializing data channel failed\")")
            return False
        s.cipher = cipher
        for k in sorted(s.keys.values(), key=lambda k: k.key_id):
            if k.phase is KS.ACTIVE and k.data is None:
                s._install_keys(k, now)
        return True

    def refuse(self, ks: KeyState | None, reason: str, temporary: bool = False) -> None:
        """An authenticated client is not admitted: tell it (AUTH_FAILED, or AUTH_FAILED,TEMP
        when it may retry later), then close."""
        s = self.s
        if ks is not None and ks.tls is not None and ks.tls.handshake_done:
            # Our key-method message first, or the client reads AUTH_FAILED as one. Also for a
            # first key refused at the handshake's end, before the client's message was read
            # (a restart from an established client's address showing another certificate,
            # lock_identity_of; its key is dead already): OpenVPN 2.6 finishes that exchange
            # and answers the PUSH_REQUEST with AUTH_FAILED, and its client exits on it. Sent
            # in the message's place, 2.6's client took it for a TLS error and came back.
            first_refused = not s.established and ks.key_id == 0 and ks.phase is KS.DEAD
            if not ks.sent_km and ((ks.phase is KS.KEY_EXCHANGE and ks.remote_km is not None) or first_refused):
                s._send_key_method(ks)
            s._send_text("AUTH_FAILED,TEMP" if temporary else "AUTH_FAILED", ks)
            s.told_refused = True
        s._fail(reason, restart=False)

    def exit_notification(self) -> None:
        """One OCC exit on UDP (every OpenVPN client understands it); over TCP the closing stream
        says enough. None to a client that acknowledged our RESTART (tell_restart): it is already
        on its way; one whose acknowledgement never came gets the OCC exit as well."""
        s = self.s
        if s.send_key is None or s.tcp or (s.restart_sent and s.control_acked):
            return
        for _ in range(max(1, s.cfg.explicit_exit_notify)):
            s._queue_data(OCC_MAGIC + bytes((OCC_EXIT,)))

    def peer_exit_restarts(self) -> bool:
        return False
