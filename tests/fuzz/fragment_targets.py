"""The `fragment` target: OpenVPN's own fragmentation (appliance/openvpn/fragment.py), both ends.

Only an authenticated peer reaches `Fragmenter.take` (it runs after decryption), so the fuzzed
bytes go to it directly, framed as that peer could send them. First byte: bit 0 the mode --
clean (0): the fuzzed payload is split by our own `split` and its parts are delivered in the
order, with the duplicates, the script says; hostile (1): the script's fragments are raw headers
and bytes, at times the script moves on. Bytes 1-2: the largest part (1..1024), byte 3: the
reassembly limit (in 16-byte steps). Then the payload, `_SEP`, the script.

Oracles beyond "never raises":
- split: 1 whole packet or 2..32 parts, none bigger than the largest part plus the header, whose
  data put together is the payload; [] only when 32 parts cannot carry it (its error set);
- clean: what comes out is exactly the payload, and it comes out exactly when every part has
  been delivered since the last time it came out (or never, when the limit is below its size);
- hostile: nothing held past its bounds -- no slot's buffer above the limit, no reassembled
  output above it (a whole packet is as big as the datagram it came in), at most N_SLOTS slots
  -- and a whole packet comes out as it went in.
"""
from __future__ import annotations

from appliance.openvpn.fragment import HEADER_LEN, MAX_PARTS, N_SLOTS, Fragmenter

_SEP = b"\xff\xfe"


def _params(data: bytes) -> tuple[int, int, int, bytes, bytes]:
    mode = data[0] & 1
    max_size = 1 + (int.from_bytes(data[1:3], "big") % 1024)
    limit = 16 * (1 + data[3])
    payload, _, script = data[4:].partition(_SEP)
    return mode, max_size, limit, payload, script


def _check_bounds(f: Fragmenter, out, limit: int) -> None:
    if len(f.slots) != N_SLOTS:
        raise AssertionError(f"{len(f.slots)} reassembly slots")
    for s in f.slots:
        if len(s.buf) > limit:
            raise AssertionError(f"a slot holds {len(s.buf)} bytes, over the limit {limit}")
    if out is not None and len(out) > limit + 4:
        raise AssertionError(f"{len(out)} bytes came out, over the limit {limit}")


def _check_split(payload: bytes, max_size: int, parts: list, f: Fragmenter) -> None:
    if not parts:
        if f.error is None or len(payload) <= max_size:
            raise AssertionError("split gave nothing without a reason")
        return
    if len(parts) > MAX_PARTS:
        raise AssertionError(f"{len(parts)} parts")
    if len(parts) == 1 and bytes(parts[0][:HEADER_LEN]) != b"\0\0\0\0":
        raise AssertionError("a single part not sent whole")
    for p in parts:
        if len(p) - HEADER_LEN > max(max_size, 0) and len(parts) > 1:
            raise AssertionError(f"a part of {len(p) - HEADER_LEN} bytes, the largest being {max_size}")
    if b"".join(bytes(p[HEADER_LEN:]) for p in parts) != payload:
        raise AssertionError("the parts put together are not the payload")


def make_fragment():
    def one(data: bytes) -> None:
        if len(data) < 4:
            return
        mode, max_size, limit, payload, script = _params(data)
        sender = Fragmenter(limit)
        parts = [bytes(p) for p in sender.split(payload, max_size)]
        _check_split(payload, max_size, parts, sender)
        f = Fragmenter(limit)
        now = 1.0
        if mode == 0:
            if not parts:
                return
            fits = len(payload) <= limit or len(parts) == 1
            pending = set(range(len(parts)))
            for b in script[:256]:
                i = b % len(parts)
                out = f.take(parts[i], now)
                _check_bounds(f, out, max(limit, len(payload)))
                pending.discard(i)
                if out is not None:
                    if bytes(out) != payload:
                        raise AssertionError(f"reassembled {bytes(out)[:32].hex()}... is not what was split")
                    if pending or not fits:
                        raise AssertionError("a payload came out before all its parts were in")
                    pending = set(range(len(parts)))
                elif not pending and fits:
                    raise AssertionError(f"every part delivered, nothing came out ({f.error})")
                elif not pending:
                    pending = set(range(len(parts)))
            return
        # hostile: [dt (1)][len (1)][header + data (len)] ...
        i = 0
        while i + 2 <= len(script):
            now += script[i] / 16.0
            n = script[i + 1]
            frag = script[i + 2:i + 2 + n]
            i += 2 + n
            out = f.take(frag, now)
            whole = len(frag) >= 4 and frag[3] == 0     # type 0, no sequence or part bits: 2.6's test
            _check_bounds(f, None if whole else out, limit)    # (a whole packet: as big as it came)
            if whole and (out is None or bytes(out) != frag[4:]):
                raise AssertionError("a whole packet did not come out as it went in")
    return one


def seeds() -> list[bytes]:
    out = []
    payload = bytes(range(256)) * 3
    for max_size, limit_b, order in ((100, 80, bytes(range(8))), (300, 200, bytes((2, 1, 0, 2))),
                                     (1000, 60, b"\0"), (17, 255, bytes(range(31, -1, -1))),
                                     (4, 10, bytes(range(40)))):
        out.append(b"\0" + max_size.to_bytes(2, "big") + bytes((limit_b,)) + payload[:max_size * 3 + 5] + _SEP
                   + order)
    f = Fragmenter(4096)
    parts = f.split(payload, 200)
    script = b"".join(bytes((1, len(p))) + bytes(p) for p in parts[::-1])
    script += bytes((0, 8)) + b"\0\0\0\0abcd" + bytes((200, 6)) + b"\x00\x00\x04\x02zz"
    out.append(b"\x01\x00\xc8\xff" + _SEP + script)
    return out
