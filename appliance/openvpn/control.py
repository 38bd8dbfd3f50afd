"""The control channel of a Session: wrapped packets ⇄ reliability layer ⇄ TLS ⇄ messages.

Why apart from session.py: this is the plumbing every key state shares, independent of role and of
the data channel. In: `_receive_control` unwraps (tls-auth/tls-crypt), checks session ids, feeds
the key state's ReliableChannel, hands in-order records to TLS and TLS's application data to the
key-method / text handlers. Out: `_queue_tls` cuts TLS output into reliable messages and `_flush`
wraps whatever is due (first sends, retransmissions, acks) into wire packets, then notes the next
control deadline. Session supplies the state (keys, wrapper, role, out) this mixin works on.
"""
from __future__ import annotations

from . import events as ev
from .errors import BadPacket, ClientRefused, PacketIdExhausted, RemoteProtocolError, VerifyRefused
from .keymethod import (KEY_METHOD_READ, KeyMethod2, decode_key_method_2_untrusted, encode_key_method_2,
                        split_text_messages_untrusted)
from .keystate import KS, KeyState
from .occstring import OccInputs, options_string, with_comp_lzo
from .opcodes import CONTROL_OPS, EARLY_NEG_FLAG_RESEND_WKC, EARLY_NEG_FLAGS, OPCODE_SHIFT, RESET_OPS, Op
from .packet import decode_body_untrusted, encode_body, parse_early_neg_tlvs_untrusted, refuse_undefined_sid_untrusted
from .peernames import to_bytes

TLS_MTU = 1250          # OpenVPN's TLS_MTU_DEFAULT: SessionConfig.tls_mtu unless max-packet-size
ACK_PIGGYBACK = 4
ACK_STANDALONE = 8
# What the peer may make us read on the control channel: each TLS record (of a handshake too),
# each text message in one, and each control packet that gives nothing new to read (a lone ACK,
# a message already had or held past a gap) costs one, from a budget of CONTROL_BURST that refills
# by CONTROL_RATE a second. Such a packet costs the receiving end ~22-26 us (unwrap, session checks,
# ACK bookkeeping), ~2.4x a data packet, and was free: an authenticated peer sending lone ACKs could
# take a core that way. (Honest: one lone ACK per 8 messages received, a resent message per loss.)
# Records are charged as they come in, before OpenSSL sees them, whether or not they hold
# application data: a KeyUpdate record holds none, costs OpenSSL ~25 us to read
# (~45 fit in a UDP control packet, ~2400 in a TCP one) and OpenSSL takes any number in a row;
# nor does it limit the 1-byte records a handshake message may be cut into (a 120 KB ClientHello
# so cut, from a peer that needs no certificate, held the server's core ~0.25 s per session).
# Why: one 1.2 KB control packet can hold ~50 TLS records or ~550 NUL-separated messages, each a
# round of Python here (~1-2 ms a packet, ~200 data packets' worth), so a peer sending them kept
# the server's one core busy for everybody at under 1 MB/s. No honest peer comes near: a
# handshake is ~10 records (~200 with 512-byte fragments and a 100 KB chain), a push of
# MAX_PUSHED_OPTIONS options in push-continuation parts, a PUSH_REQUEST a second, a key-method
# message per renegotiation. Past it the session ends.
CONTROL_BURST = 1024
CONTROL_RATE = 64.0
_ACK_OP = int(Op.ACK_V1) << OPCODE_SHIFT      # the ACK's opcode byte, key id 0


class ControlChannel:
    """Mixin of Session: the control-channel steps (see the module docstring)."""

    # Session's state this mixin assigns, declared here with Session's types (set in
    # Session.__init__) so a type checker -- and mypyc, which lays attributes out per class --
    # sees one type for each, not the narrower one inferred from this mixin's own assignments.
    peer_sid: bytes | None
    peer_common_name: str | None
    _locked_chain: tuple[bytes, ...] | None
    _restart_of: tuple[str | None, tuple[bytes, ...] | None, str | None] | None
    _ctl_deadline: float | None
    _km_made: tuple | None

    def _receive_control(self, packet, now: float) -> None:
        refuse_undefined_sid_untrusted(packet)
        op_b, sender_sid, body = self.wrapper.unwrap_untrusted(bytes(packet), now)
        op, key_id = op_b >> 3, op_b & 7
        if op not in CONTROL_OPS:
            raise BadPacket("unknown opcode")
        cb = decode_body_untrusted(op, body)
        if self.peer_sid is None:
            if not self.role.first_packet_ok(op):
                raise BadPacket("control packet before the peer's hard reset")
            self.peer_sid = sender_sid
        elif sender_sid != self.peer_sid:
            raise BadPacket("wrong peer session id")
        # The peer is heard from (ping-restart's timer) once its packet unwrapped and named its
        # session, whatever follows: as OpenVPN 2.6, whose tls_pre_decrypt says "processed"
        # before reading the ACKs and checking the key id (forward.c then resets the timer).
        self.last_recv = now
        if cb.acks and cb.peer_sid != self.own_sid:
            raise BadPacket("ack for another session")
        ks = self.keys.get(key_id)
        if op == Op.CONTROL_SOFT_RESET_V1 and self.established and self._soft_reset_refused(ks, key_id, cb):
            self._spend_control_budget(1, now)      # unwrapped and checked for nothing, as a lone ACK
            return
        if ks is not None and op == Op.CONTROL_SOFT_RESET_V1 and key_id != self.newest_key_id and self.established \
                and not ks.negotiating:
            # Key ids wrap 7 → 1: a soft reset for an old (lame-duck) id starts a new negotiation.
            # Not for a key still negotiating: when both ends started a renegotiation at once
            # with different ids (the server's earlier attempt failed, so it was one id ahead),
            # the peer's answer for our key is not the newest id, and replacing that key state
            # mid-handshake broke its TLS ("invalid session id") and ended the session.
            ks = None
        if ks is None:
            if op == Op.CONTROL_SOFT_RESET_V1 and self.established:
                if not self._may_answer_soft_reset(key_id, cb, now):
                    return
                ks = self._answer_soft_reset(key_id, now)
            elif self.role.opens_first_key(op, key_id):
                ks = self._new_key_state(0, now)
                ks.reliable.enqueue(Op.CONTROL_HARD_RESET_SERVER_V2, self.role.reset_payload())
            else:
                raise BadPacket("packet for unknown key id")
        self._receive_on_key(ks, op, cb, now)

    def _soft_reset_refused(self, ks: KeyState | None, key_id: int, cb) -> bool:
        """Whether an established session's soft reset carries a key id OpenVPN 2.6 never sends
        (dropped unacked, counted): 0, which only the first key has (ssl.c key_state_init wraps
        7 -> 1), or the id of the key already active, whose message id it would take. 2.6 drops
        both as "local/remote key IDs out of sync" (tls_pre_decrypt, after key_state_soft_reset
        made its new key the next id). A resend of a message that key had already is let through
        to be acked again: a peer that answered our soft reset resends it until our ack arrives.
        Other ids stay answered even when not the one we would pick next: after a renegotiation
        one end saw fail and the other never saw, the ends are one id apart, and answering the
        peer's is what lets the next renegotiation succeed (_may_answer_soft_reset)."""
        if key_id == 0:
            self._count("soft reset for key id 0")
            return True
        if ks is not None and key_id == self.newest_key_id and ks.phase == KS.ACTIVE \
                and cb.msg_id is not None and cb.msg_id >= ks.reliable.next_recv_id:
            self._count("soft reset for the active key id")
            return True
        return False

    def _receive_on_key(self, ks: KeyState, op: int, cb, now: float) -> None:
        """The rest of a control packet's handling once its key state is known: its acks, then
        its message through the reliability layer to TLS."""
        if cb.acks:
            ks.reliable.process_acks(cb.acks)
            self._maybe_switch(ks, now)
        if cb.msg_id is None:
            self._spend_control_budget(1, now)
            # A lone ACK gives TLS nothing to read: once its handshake is done, pump() could only
            # drain an output buffer every step empties already, so it is not called per ACK.
            if ks.tls is None or not ks.tls.handshake_done:
                self._advance_now_or_at_batch_end(ks, now)
            return
        if op == Op.CONTROL_HARD_RESET_SERVER_V2 and cb.msg_id == 0:
            tlvs = parse_early_neg_tlvs_untrusted(cb.payload) if cb.payload else {}
            flags = tlvs.get(EARLY_NEG_FLAGS)
            if flags and len(flags) == 2 and int.from_bytes(flags, "big") & EARLY_NEG_FLAG_RESEND_WKC:
                ks.wkc_resend = True
        delivered = ks.reliable.receive(cb.msg_id, op, cb.payload)
        if not delivered:
            self._spend_control_budget(1, now)  # a message already had, or held past a gap
        # (Not point-to-point: there the tls-server's data may follow its key-method message in
        # the same batch, read in order as 2.6 reads them -- deferred, it met no keys and was
        # dropped; README, batch50. The reason for deferring is a pulling client's.)
        if self._batch and ks.phase == KS.KEY_EXCHANGE and self.is_client and ks.key_id == 0 \
                and not self.established and not self.cfg.p2p:
            self._deferred.append((ks, delivered))      # acked first, read in settle()
            return
        self._take_messages(ks, delivered, now)

    def _take_messages(self, ks: KeyState, delivered: list[tuple[int, bytes]], now: float) -> None:
        for m_op, payload in delivered:
            self._deliver(ks, m_op, payload, now)
        self._advance_now_or_at_batch_end(ks, now)

    def _advance_now_or_at_batch_end(self, ks: KeyState, now: float) -> None:
        """_advance, or for a client's handshake inside a batch, once at end_batch. Why: the
        server's TLS flight comes in several packets of one batch (an ACK, its ServerHello with
        the hybrid key share, its certificate), and OpenSSL was entered per packet, each time to
        find a record cut short, every pump with its own drain and queueing around it; driven
        once, all of it is fed. Client only: the dispatcher acts on a server session's progress
        after each packet (_promote)."""
        if self._batch and self.is_client and ks.tls is not None and not ks.tls.handshake_done:
            if ks not in self._advance_due:
                self._advance_due.append(ks)
            return
        self._advance(ks, now)

    def _deliver(self, ks: KeyState, op: int, payload: bytes, now: float) -> None:
        if op in RESET_OPS:
            if ks.phase == KS.RESET:
                ks.start_tls(self.tls_context, self.cfg.tls)
            return
        if op == Op.CONTROL_V1 or op == Op.CONTROL_WKC_V1:
            if ks.retired_at is not None:
                self._count("control message for a retired key")
                return
            if ks.tls_broken:
                # Acked (the peer's reliability layer lets it go), not read: that TLS is over.
                self._count("control message for a key whose TLS failed")
                self._spend_control_budget(1, now)
                return
            if ks.tls is None:
                e = RemoteProtocolError("TLS data before reset")
                if self._contain_tls_failure(ks, e, now):
                    self._spend_control_budget(1, now)
                    return
                raise e
            try:
                records = ks.tls.feed(payload, self._control_room(now))
            except RemoteProtocolError as e:
                if self._contain_tls_failure(ks, e, now):
                    self._spend_control_budget(1, now)
                    return
                raise
            self._spend_control_budget(records, now)

    def _advance(self, ks: KeyState, now: float) -> None:
        """Drive TLS and the key exchange of one key state as far as the inputs allow."""
        if ks.tls is None or ks.phase == KS.DEAD or ks.tls_broken:
            if ks.refusal is not None:
                # The client's message after its refused handshake (its key-method message):
                # acked with the refusal, or a 2.6 client never takes the key exchange as done
                # and never reads the AUTH_FAILED behind our key-method message.
                raise ClientRefused(ks.refusal)
            return
        was_done = ks.tls.handshake_done
        try:
            out, msgs = ks.tls.pump()
        except VerifyRefused as e:
            self._queue_tls(ks, e.notice)       # sent by the flush after the session ends
            self.told_refused = bool(e.notice) and not self.is_client    # (and resent: refusals.py)
            raise
        except RemoteProtocolError as e:
            if self._contain_tls_failure(ks, e, now):
                return
            raise
        self._queue_tls(ks, out)
        if ks.tls.verify_chain is not None and not ks.tls.verdict_asked:
            # tls-verify: the chain goes to the gateway's command; this key waits for the verdict.
            ks.tls.verdict_asked = True
            self.events.append(ev.TlsVerifyRequested(ks.key_id, ks.tls.verify_chain, ks.tls.peer_cn, check=ks.tls))
        if ks.tls.handshake_done and not was_done:
            # The last CN, control characters made `_` (common_name, as the checks read it): the
            # name reaches the log, the status file, ccd lookups, scripts and the management interface.
            cn = ks.tls.peer_cn
            if self._restart_of is not None and not self._cn_locked:
                # A restart from an established client's address: that client's locks hold
                # (lock_identity_of), as 2.6's instance keeps its locked_cn / cert hashes.
                self.peer_common_name, self._locked_chain = self._restart_of[0], self._restart_of[1]
                self._cn_locked = True
            # Only a server locks the chain (below): a client leaves the hashes unread, so they
            # are never worked out on its way from the server's flight to our Finished.
            chain = None if self.is_client else ks.tls.chain_digests
            refusal = None
            if self._cn_locked and cn != self.peer_common_name:
                # As OpenVPN (tls_lock_common_name): a renegotiation with another valid
                # certificate must not carry the tunnel over to a different identity.
                refusal = f"TLS Auth Error: TLS object CN attempted to change from {self.peer_common_name!r} to {cn!r}"
            # A client re-verifies the server's chain at each handshake (ca, remote-cert-tls,
            # verify-x509-name, tls-verify) and holds it to its name (above), but not to its
            # certificates: a server renews its own (our reload takes a new `cert` and keeps
            # its clients), and OpenVPN 2.6's client locks nothing (its locks are the server's,
            # multi.c); a renewed server certificate dropped each of our clients at its next
            # renegotiation, where Debian's carried on.
            elif self._locked_chain is not None and chain != self._locked_chain and not self.is_client:
                # As OpenVPN 2.6 (tls_lock_cert_hash_set, cert_hash_compare): the certificate at
                # every depth of the verified chain is locked, not the leaf alone. Another
                # certificate of the same name, or the same one under a re-issued sub-CA, is not
                # the peer that connected -- client-connect, the status and the management
                # interface vouched for the first chain's serials and fingerprints.
                refusal = (f"TLS Auth Error: TLS object CN={cn} client-provided SSL certs unexpectedly "
                           "changed during mid-session reauth")
            if refusal is not None:
                self._drop_refused_cert(ks)
                if not self.established and ks.key_id == 0 and not msgs:
                    # A restart's first key (lock_identity_of): 2.6 goes on with the key exchange
                    # and answers AUTH_FAILED; ours waits for the client's key-method message, to
                    # ack it with the refusal (see ServerRole.refuse), or for hand-window.
                    ks.refusal = refusal
                    return
                raise ClientRefused(refusal)
            self.peer_common_name = cn
            self._cn_locked = True
            self._locked_chain = chain
            self.events.append(ev.HandshakeCompleted(ks.key_id, ks.tls.version, ks.tls.cipher, cn, ks.tls.group))
            ks.phase = KS.KEY_EXCHANGE
            self.role.tls_done(ks)
        for m in msgs:
            self._app_message(ks, m, now)

    def chain_verified_again(self, chain: tuple[bytes, ...] | None) -> None:
        """A reload verified the peer's certificate against the new `ca` and kept it: the chain
        that store built (peer_rechecker's hashes, None without a CA) is the one its
        renegotiations must show from now on, the certificate itself unchanged. Why: a renewed
        CA certificate (same name and key) in the reloaded `ca` ends every chain OpenSSL
        verifies; the lock still held the old one and dropped each kept client at its next
        renegotiation, for a change of the server's own. OpenVPN 2.6's SIGHUP has every client
        handshake anew, locking the new chain."""
        if chain and self._locked_chain is not None and chain[0] == self._locked_chain[0]:
            self._locked_chain = chain

    def lock_identity_of(self, other: "Session") -> None:
        """Server: this new session is a restart from the address of `other`, an established
        client (server.py _create): it keeps that client's ID and peer-id, so it must be that
        client -- its first handshake shows the same common name and certificate chain, and
        the same username if one was given, or is refused as a renegotiation changing them is.
        OpenVPN 2.6 hands such a reset to the address's instance, whose locked_cn, cert hashes
        and locked_username hold for it ("TLS object CN attempted to change"). Without this,
        anyone who completed a handshake from that address and port (the NAT port later given
        to another user, anyone on the path) with any valid certificate took the client's
        record over: its ID, its >CLIENT:REAUTH, its status row."""
        if other._cn_locked:
            self._restart_of = (other.peer_common_name, other._locked_chain, other.peer_username)

    def _drop_refused_cert(self, ks: KeyState) -> None:
        """A renegotiation's certificate the locks refused: that key is dead and its certificate
        nobody's identity -- peer_certificate (the client-disconnect script's X509_0_* and
        tls_serial_0, a CRL reload's check) goes on naming the peer that connected."""
        ks.phase = KS.DEAD
        ks.tls.peer_cert = None

    def _queue_tls(self, ks: KeyState, data: bytes) -> None:
        if not data:
            return
        # cfg.tls_mtu: max-packet-size's (OpenVPN's TLS_MTU_DEFAULT otherwise); a tls-crypt-v2 key
        # resent with the first packet still goes whole, as in OpenVPN, with a little TLS beside it.
        # A floor of 16 bytes of TLS a packet: max-packet-size 154 less a tls-crypt-v2 client key
        # (hundreds of bytes) left none, or less -- a loop that stepped by 0 or sent nothing.
        room = self.cfg.tls_mtu - 9 - self.wrapper.overhead - 1 - 4 * ACK_PIGGYBACK - 8 - 4
        if ks.wkc_resend and not ks.sent_first_control:
            room -= len(self.wrapper.wkc)
        room = max(room, 16)
        for i in range(0, len(data), room):
            op = Op.CONTROL_V1
            if ks.wkc_resend and not ks.sent_first_control:
                op = Op.CONTROL_WKC_V1
            ks.sent_first_control = True
            ks.reliable.enqueue(op, data[i:i + room])

    def _text_key(self, ks: KeyState | None = None) -> KeyState | None:
        """The key state a control message goes on (`ks`, else the active one), or None when it
        has no TLS session that can carry one: none up yet, or its TLS failed (`tls_broken`).
        Callers that must reach the peer (RESTART/HALT, EXIT) then say it another way."""
        ks = ks or self._active_ks()
        if ks is None or ks.tls is None or not ks.tls.handshake_done or ks.tls_broken:
            return None
        return ks

    def _send_text(self, text: str, ks: KeyState | None = None) -> bool:
        """Queue a control message; False when nothing could carry it (_text_key)."""
        ks = self._text_key(ks)
        if ks is None:
            return False
        self._queue_tls(ks, ks.tls.send_message(to_bytes(text) + b"\0"))
        return True

    def _active_ks(self) -> KeyState | None:
        best = None
        for ks in self.keys.values():
            if ks.phase == KS.ACTIVE and ks.tls is not None and not ks.tls_broken \
                    and (best is None or ks.created >= best.created):
                best = ks
        if best is None:
            best = self.keys.get(0)
        return best

    def _options_string(self) -> str:
        """What OpenVPN 2.6 would send for the same config (occstring.py): its peer compares it
        with its own expectation (warnings at verb 7, a refusal with opt-verify)."""
        cfg = self.cfg
        occ = cfg.occ or OccInputs(dev_type=cfg.dev_type, tun_mtu=cfg.tun_mtu, tun_mtu_extra=cfg.tun_mtu_extra,
                                   comp=cfg.comp, fragment=bool(cfg.fragment_room), auth=cfg.auth,
                                   data_ciphers=tuple(cfg.data_ciphers))
        text = options_string(occ, self.tcp, self.is_client)
        # A `compress migrate` server speaks to a client whose string says comp-lzo as 2.6's does
        # (its framing then is the one it pushed): the string with comp-lzo.
        return with_comp_lzo(text) if self.peer_uses_comp and occ.comp is None else text

    def _make_key_method(self) -> tuple[KeyMethod2, bytes]:
        r = self.cfg.random_bytes
        km = KeyMethod2(random1=r(32), random2=r(32), options=self._options_string())
        self.role.fill_key_method(km)
        return km, encode_key_method_2(km, self.is_client)

    def _send_key_method(self, ks: KeyState) -> None:
        made, self._km_made = self._km_made, None        # the first key's, made by prime()
        km, data = made if made is not None and ks.key_id == 0 else self._make_key_method()
        if len(data) > KEY_METHOD_READ and self.is_client:
            # OpenVPN 2.6's client cannot write it ("Key Method #2 write failed", at every
            # attempt) and its server reads only that much: a profile's mistake, not the network's.
            self._fail(f"the username and password are too long: the key-method message would be {len(data)} "
                       f"bytes, OpenVPN 2.6 sends and reads at most {KEY_METHOD_READ}", restart=False)
            return
        ks.local_km = km
        ks.sent_km = True
        self._queue_tls(ks, ks.tls.send_message(data))

    def _control_room(self, now: float) -> int:
        """The whole units the control budget (see CONTROL_BURST) holds now, refilled up to `now`."""
        self._ctl_budget = min(CONTROL_BURST, self._ctl_budget + (now - self._ctl_budget_at) * CONTROL_RATE)
        self._ctl_budget_at = now
        return int(self._ctl_budget)

    def _spend_control_budget(self, cost: int, now: float) -> None:
        """Take `cost` from the control budget (see CONTROL_BURST); RemoteProtocolError when spent."""
        self._control_room(now)
        self._ctl_budget -= cost
        if self._ctl_budget < 0:
            raise RemoteProtocolError(f"control channel flood: more than {CONTROL_BURST} TLS records and "
                                      f"messages at once (or {CONTROL_RATE:.0f} a second)")

    def _app_message(self, ks: KeyState, data: bytes, now: float) -> None:
        if ks.remote_km is None:        # its records were charged as they came in (_deliver)
            try:
                km = decode_key_method_2_untrusted(data, from_client=not self.is_client)
            except BadPacket as e:
                # From the TLS peer itself, not a stray packet: as OpenVPN's key_method_2_read,
                # the handshake fails now (a TLS error), not at hand-window. A server's
                # tls-verify refusal reaches our client so (tls.REFUSAL_NOTICE).
                raise RemoteProtocolError(f"TLS Error: {e.reason}") from None
            ks.remote_km = km
            self.role.got_key_method(ks, km, now)
            return
        # Charged before the split (one per NUL-ended message; the record was charged before TLS
        # read it): each message's decoding is the work being bounded.
        self._spend_control_budget(data.count(b"\0"), now)
        texts, refused = split_text_messages_untrusted(data)
        for why in refused:
            self._count(why.split(":", 1)[0])
            self._warn(why)
        for text in texts:
            if self.closed:
                return
            self.role.text_message(ks, text, now)

    def _flush(self, now: float) -> None:
        """Turn every key state's due messages and pending acks into wire packets, then note when
        the control side next needs a timer."""
        try:
            self._wrap_due(now)
        except PacketIdExhausted as e:
            self._fail(str(e), restart=True, tls_error=True)
        except RemoteProtocolError as e:          # the peer acknowledges nothing (reliable.SEND_QUEUE_MAX)
            self._count("control messages unacknowledged")
            self._fail(str(e), restart=True, tls_error=True)
        self._ctl_deadline = None if self.closed else self._control_deadline()

    def _wrap_due(self, now: float) -> None:
        wrap, out, own_sid, peer_sid = self.wrapper.wrap, self.out, self.own_sid, self.peer_sid
        for ks in self.keys.values():
            rel = ks.reliable
            key_id = ks.key_id
            for m in rel.due(now):
                acks = rel.take_acks(ACK_PIGGYBACK) if peer_sid is not None else []
                body = encode_body(acks, peer_sid if acks else None, m.msg_id, m.payload)
                out.append(wrap((m.op << OPCODE_SHIFT) | key_id, own_sid, body, now))
            while rel.pending_acks and peer_sid is not None:
                acks = rel.take_acks(ACK_STANDALONE)
                body = encode_body(acks, peer_sid, None)
                out.append(wrap(_ACK_OP | key_id, own_sid, body, now))

