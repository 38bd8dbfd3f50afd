"""A client that holds a valid certificate (and the tls-crypt key) and misbehaves on purpose once
its tunnel is up: our own engine's Session, driven over a UDP socket, with the misbehaviour done
through its internals. Why the engine and not a patched OpenVPN: it already speaks the whole
protocol (tls-crypt, TLS, key-method, push), so each attack is a few lines on top of a real,
authenticated session.

    python -m lab.reliability.rawclient PROFILE MODE SECONDS [--peer-ids N]

MODE:
  reneg     a soft reset the moment the last renegotiation finished, for SECONDS
  push      PUSH_REQUEST after PUSH_REQUEST (TLS records inside the control channel)
  endless   TLS records of one control message that never ends (no NUL), one after another
  ack       P_ACK_V1 packets, correctly wrapped, acking message ids never sent
  window    P_CONTROL_V1 packets, correctly wrapped, with message ids far ahead of the window
  deadkey   P_DATA_V2 packets under every key id but the live one (dead keys), valid wrapping
  peerid    P_DATA_V2 packets naming other clients' peer-ids (0..N-1), random contents
  cycle     a new session (new source port) after each burst of soft resets the server answers at
            once: connect, renegotiate until one is held back, drop the session, again
  halfopen  holding only the tls-crypt key (no certificate): --count handshakes from --sources
            addresses, each taken through the cookie exchange and the server's TLS flight, then
            left silent for SECONDS (the server holds each until hand-window)
  garbage   random bytes from the same socket (what anybody can send: the floods' baseline)
  idle      nothing (the lab's baseline: an honest connected client)

`--pps N` paces the packet modes (ack, window, deadkey, peerid, garbage) at N packets a second.

Prints `tunnel up`, then once at the end one line `result k=v ...`: what was sent, the server's
answers and whether our session was still alive. Bounded: it exits after SECONDS (+ 60 s at
most to connect)."""
from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import struct
import time

from appliance.openvpn import events as ev
from appliance.openvpn.config import load_config
from appliance.openvpn.keystate import KS
from appliance.openvpn.opcodes import Op
from appliance.openvpn.packet import encode_body
from appliance.openvpn.session import Session
from appliance.openvpn.settings import client_session_config

CONNECT_TIMEOUT = 60.0


def _pump(s: Session, sock: socket.socket, wait: float, counts: dict) -> None:
    """Read what arrived (up to `wait` seconds for the first), feed the session, send its output."""
    sock.settimeout(max(0.0, wait))
    n = 0
    while n < 256:
        try:
            p = sock.recv(65536)
        except (BlockingIOError, socket.timeout):
            break
        except OSError:
            break
        n += 1
        counts["received"] = counts.get("received", 0) + 1
        s.receive(p, time.monotonic())
        sock.settimeout(0.0)
    now = time.monotonic()
    dl = s.next_deadline()
    if dl is not None and now >= dl:
        s.handle_timer(now)
    for p in s.take_outgoing():
        try:
            sock.send(p)
        except OSError:
            counts["send errors"] = counts.get("send errors", 0) + 1


def _send(sock: socket.socket, p: bytes, counts: dict, what: str) -> None:
    try:
        sock.send(p)
        counts[what] = counts.get(what, 0) + 1
    except OSError:
        counts["send errors"] = counts.get("send errors", 0) + 1


def _connect(opts, counts: dict, timeout: float = CONNECT_TIMEOUT) -> tuple[Session, socket.socket] | None:
    """A new session from a new socket (source port), up to its TunnelUp; None if it did not come up."""
    rem = opts.remotes[0]
    cfg = client_session_config(opts, "udp")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect((rem.host, int(rem.port)))
    now = time.monotonic()
    s = Session(cfg, now)
    s.start(now)
    end = now + timeout
    while time.monotonic() < end and not s.closed:
        _pump(s, sock, 0.05, counts)
        while s.events:
            if isinstance(s.events.popleft(), ev.TunnelUp):
                return s, sock
    sock.close()
    return None


def _cycle(opts, seconds: float, counts: dict) -> dict:
    """Mode `cycle`: sessions one after another, each renegotiating as long as the server answers
    at once (its burst), then dropped without a word."""
    t0 = time.monotonic()
    sessions = renegs = 0
    while time.monotonic() - t0 < seconds:
        got = _connect(opts, counts, timeout=5.0)
        if got is None:
            counts["connects failed"] = counts.get("connects failed", 0) + 1
            continue
        s, sock = got
        sessions += 1
        if sessions == 1:
            print("tunnel up", flush=True)
        stall = time.monotonic()
        while time.monotonic() - t0 < seconds and time.monotonic() - stall < 0.5 and not s.closed:
            newest = s._newest()
            if newest is not None and newest.phase == KS.ACTIVE:
                s.renegotiate(time.monotonic())
            _pump(s, sock, 0.002, counts)
            while s.events:
                if isinstance(s.events.popleft(), ev.KeyRenegotiated):
                    renegs += 1
                    stall = time.monotonic()
        s.release()
        sock.close()
    cpu = os.times()
    return {"up": int(sessions > 0), "attacker_cpu_s": round(cpu.user + cpu.system, 1),
            "seconds": round(time.monotonic() - t0, 1), "sessions": sessions, "renegotiations done": renegs, **counts}


def _half_open(opts, seconds: float, count: int, sources: list[str], counts: dict) -> dict:
    """Mode `halfopen`: `count` sessions without a certificate, each through the server's first TLS
    flight, then silent; returns how many the server answered that far."""
    rem = opts.remotes[0]
    cfg = client_session_config(opts, "udp")
    cfg.tls = dataclasses.replace(cfg.tls, cert=None, key=None)
    held = []
    t0 = time.monotonic()
    for i in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if sources:
            sock.bind((sources[i % len(sources)], 0))
        sock.connect((rem.host, int(rem.port)))
        s = Session(cfg, time.monotonic())
        s.start(time.monotonic())
        got = 0
        for p in s.take_outgoing():          # the hard reset
            sock.send(p)
        sock.settimeout(2.0)
        try:
            s.receive(sock.recv(65536), time.monotonic())   # the server's reset (its cookie)
            for p in s.take_outgoing():      # our ACK and ClientHello: the server makes its TLS state
                sock.send(p)
            got = 1
            sock.recv(65536)                 # the first packet of its flight: the state is made,
            got += 1                         # and the rest is never answered (nor read: a wait for
        except OSError:                      # its end was 0.1 s per handshake, most of the run)
            pass
        if got >= 2:
            held.append((s, sock))
            counts["handshakes held"] = counts.get("handshakes held", 0) + 1
        else:
            counts["handshakes not answered"] = counts.get("handshakes not answered", 0) + 1
            sock.close()
    print("tunnel up", flush=True)       # (the orchestrator's cue: the state is in place)
    print(f"held {len(held)} of {count} in {time.monotonic() - t0:.1f} s", flush=True)
    time.sleep(max(0.0, seconds))
    for s, sock in held:
        sock.close()
    cpu = os.times()
    return {"up": 1, "attacker_cpu_s": round(cpu.user + cpu.system, 1), **counts}


def run(profile: str, mode: str, seconds: float, peer_ids: int = 64, pps: float = 0, count: int = 0,
        sources: list[str] | None = None) -> dict:
    opts = load_config(profile)
    counts: dict = {}
    if mode == "cycle":
        return _cycle(opts, seconds, counts)
    if mode == "halfopen":
        return _half_open(opts, seconds, count, sources or [], counts)
    got = _connect(opts, counts)
    if got is None:
        return {"up": 0}
    s, sock = got
    print("tunnel up", flush=True)
    t0 = time.monotonic()
    end = t0 + seconds
    renegs = 0
    own_pid = s.peer_id if s.peer_id is not None else -1
    rng = os.urandom
    sent_packets = 0
    while time.monotonic() < end and not s.closed:
        now = time.monotonic()
        if pps and mode in ("ack", "window", "deadkey", "peerid", "garbage"):
            owed = (now - t0) * pps - sent_packets
            if owed < 64:
                _pump(s, sock, min(0.01, (64 - owed) / pps), counts)
                continue
            sent_packets += 64
        ks = s._active_ks()
        if mode == "reneg":
            newest = s._newest()
            if newest is not None and newest.phase == KS.ACTIVE:
                s.renegotiate(now)
                counts["soft resets started"] = counts.get("soft resets started", 0) + 1
        elif mode == "push" and ks is not None:
            if len(ks.reliable.queue) >= 16:     # our own send queue bound (reliable.SEND_QUEUE_MAX)
                _pump(s, sock, 0.001, counts)
                continue
            for _ in range(8):
                s._send_text("PUSH_REQUEST", ks)
            counts["push requests"] = counts.get("push requests", 0) + 8
            s._flush(now)
        elif mode == "endless" and ks is not None and ks.tls is not None:
            if len(ks.reliable.queue) < 8:
                s._queue_tls(ks, ks.tls.send_message(b"A" * 1000))
                counts["endless records"] = counts.get("endless records", 0) + 1
            s._flush(now)
        elif mode == "ack" and ks is not None and s.peer_sid is not None:
            for _ in range(64):
                ids = struct.unpack("!4I", rng(16))
                body = encode_body(list(ids), s.peer_sid, None)
                _send(sock, s.wrapper.wrap((int(Op.ACK_V1) << 3) | ks.key_id, s.own_sid, body, now), counts, "acks")
        elif mode == "window" and ks is not None and s.peer_sid is not None:
            for i in range(64):
                mid = 1000 + int.from_bytes(rng(3), "big")
                body = encode_body([], None, mid, rng(100))
                _send(sock, s.wrapper.wrap((int(Op.CONTROL_V1) << 3) | ks.key_id, s.own_sid, body, now),
                      counts, "far-ahead control packets")
        elif mode == "deadkey" and s.send_key is not None:
            live = s.send_key.key_id
            for i in range(64):
                p = s.encrypt(bytes(60))
                if p is None:
                    break
                kid = (live + 1 + i % 7) % 8
                p = bytes([(p[0] & ~7) | kid]) + p[1:]
                _send(sock, p, counts, "dead-key data packets")
        elif mode == "peerid":
            for i in range(64):
                pid = (i + int.from_bytes(rng(1), "big")) % peer_ids
                if pid == own_pid:
                    continue
                p = bytes([(int(Op.DATA_V2) << 3) | (s.send_key.key_id if s.send_key else 0)]) \
                    + pid.to_bytes(3, "big") + rng(4) + rng(16) + rng(80)
                _send(sock, p, counts, "foreign peer-id data packets")
        elif mode == "garbage":
            for i in range(64):
                _send(sock, rng(120), counts, "garbage packets")
        _pump(s, sock, 0.0 if mode not in ("reneg", "idle") else 0.002, counts)
        while s.events:
            e = s.events.popleft()
            if isinstance(e, ev.KeyRenegotiated):
                renegs += 1
            elif isinstance(e, ev.SessionClosed):
                counts["closed reason"] = getattr(e, "reason", "?")
    # Our side's view only: a server that ended the session without a word is not seen here
    # (authattack.py reads the server's log for that).
    alive = not s.closed
    cpu = os.times()
    res = {"up": 1, "attacker_cpu_s": round(cpu.user + cpu.system, 1), "seconds": round(time.monotonic() - t0, 1),
           "renegotiations done": renegs,
           "session alive at end": int(alive), **counts}
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile")
    ap.add_argument("mode", choices=["reneg", "push", "endless", "ack", "window", "deadkey", "peerid", "garbage",
                                     "idle", "cycle", "halfopen"])
    ap.add_argument("seconds", type=float)
    ap.add_argument("--peer-ids", type=int, default=64)
    ap.add_argument("--pps", type=float, default=0, help="packets a second in the packet modes (0: flat out)")
    ap.add_argument("--count", type=int, default=300, help="halfopen: handshakes to hold")
    ap.add_argument("--sources", default="", help="halfopen: comma-separated local addresses to send from")
    a = ap.parse_args(argv)
    r = run(a.profile, a.mode, a.seconds, a.peer_ids, a.pps, a.count, [x for x in a.sources.split(",") if x])
    print("result " + " ".join(f"{k.replace(' ', '_')}={v}" for k, v in r.items()), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
