"""The control channel's replay protection has replay-window's time limit, as OpenVPN 2.6.

2.6 gives each session's tls-auth / tls-crypt(-v2) packet ids the same window as the data
channel's, `replay-window N T` (ssl.c session_init: packet_id_init(&session->tls_wrap.opt.packet_id,
replay_window, replay_time, ...)), and crypto.c crypto_check_replay reaps by time before each
test (packet_id_reap: an id older than one received more than T seconds ago is refused). Ours had
the bitmap alone: a control packet somebody on the path held back was taken whenever it came, as
long as fewer than 64 newer ones had arrived -- and a quiet control channel sends a few a minute.

What the operator checks: a held-back control packet is dropped, counted ("replayed or too old
control packet"), more than T seconds after a newer one arrived; within T it is still taken
(reordering); `replay-window N T` from the config sets both for the control channel too.
"""
from __future__ import annotations

from appliance.openvpn import keyfiles, settings, wrapping
from appliance.openvpn.config import parse_config
from appliance.openvpn.opcodes import Op, op_byte
from appliance.openvpn.packet import encode_body
from tests.engine.test_server_dispatcher import _client, _pem, _pump, _server, _up
from tests.engine.test_server_dispatcher import pki  # noqa: F401 - the fixture

ADDR = ("198.18.0.34", 4034)
REASON = "replayed or too old control packet"


def _up_pair(pki, protection):  # noqa: F811
    key = keyfiles.parse_static_key(keyfiles.generate_static_key())
    d = _server(pki, protection, static_key=key, key_direction=0)
    if protection == "tls-auth":
        mk = lambda: wrapping.TlsAuthWrapper(key, 1)  # noqa: E731
    else:
        mk = lambda: wrapping.TlsCryptWrapper(key, False)  # noqa: E731
    c = _client(pki, pki["clients"][1], mk)
    _pump(d, [(c, ADDR)])
    assert _up(c)
    return d, c


def _lone_ack(c, now: float) -> bytes:
    """A control packet of the client's own (an ACK of the server's reset, long acked): its
    wrapper gives it the next replay id, as a real one would get."""
    return c.wrapper.wrap(op_byte(Op.ACK_V1, 0), c.own_sid, encode_body([0], c.peer_sid, None, b""), now)


def _refused(d) -> int:
    return d.drop_counters().get(REASON, 0)


def test_a_held_back_control_packet_is_refused_after_replay_time(pki):  # noqa: F811
    for protection in ("tls-crypt", "tls-auth"):
        d, c = _up_pair(pki, protection)
        rec = d.record(ADDR)
        before = _refused(d)
        # Within T (15 s): an older packet arriving after a newer one is reordering, taken.
        held, newer = _lone_ack(c, 1.0), _lone_ack(c, 1.0)
        d.receive(newer, ADDR, 1.0)
        d.receive(held, ADDR, 10.0)
        assert _refused(d) == before and rec.alive
        # Past T: the same held back for 16 s is refused before it is opened.
        held, newer = _lone_ack(c, 20.0), _lone_ack(c, 20.0)
        d.receive(newer, ADDR, 20.0)
        d.receive(held, ADDR, 36.5)
        assert _refused(d) == before + 1, protection
        assert rec.alive, "a refused packet ends nothing"
        # The session goes on: the next packet in order is taken.
        d.receive(_lone_ack(c, 37.0), ADDR, 37.0)
        assert _refused(d) == before + 1


def test_replay_window_from_the_config_applies_to_the_control_channel(pki, tmp_path):  # noqa: F811
    key, ca = tmp_path / "ta.key", tmp_path / "ca.crt"
    key.write_text(keyfiles.generate_static_key())
    ca.write_bytes(_pem(pki["ca"][0]))
    base = f"client\ndev tun\nremote 198.18.0.1\nca {ca}\ntls-crypt {key}\n"
    w = settings.wrapper_factory(parse_config(base + "replay-window 128 5\n"), False)()
    assert (w.window.size, w.window.time_limit) == (128, 5.0)
    w = settings.wrapper_factory(parse_config(base + "replay-window 128 0\n"), False)()
    assert w.window.time_limit is None
    w = settings.wrapper_factory(parse_config(base), False)()
    assert (w.window.size, w.window.time_limit) == (64, 15.0)
