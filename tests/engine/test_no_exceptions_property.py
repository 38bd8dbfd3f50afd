"""Property: nothing a peer sends raises out of Session.receive or ServerDispatcher.receive.

Hypothesis mutates packets recorded from an established in-memory pair (and a dispatcher with a
real client), and has an authenticated peer send arbitrary control text and arbitrary pushed
options. The only acceptable outcome of hostile input is a counter, a Warning, or a closed session
with a reason — never an exception (the engine's documented BadPacket stays inside it too).
"""
from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings, strategies as st

from appliance.openvpn import events as ev
from appliance.openvpn import wrapping
from tests.engine.test_memory_link import Link, make_pair, recorded_pair, up
from tests.engine.test_memory_link import pki  # noqa: F401 - the fixture
from tests.engine.test_server_dispatcher import _client, _icmp, _server, connected_recording
from tests.engine.test_server_dispatcher import pki as dpki  # noqa: F401 - the fixture
from tests.aead_paths import aead_path  # noqa: F401 - the fixture: both AEAD paths, compiled and Python

pytestmark = pytest.mark.usefixtures("aead_path")

PROP = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class Pair:
    """An established client/server pair with the packets of its handshake and some data."""

    def __init__(self, pki, protection: str) -> None:
        self.pki, self.protection = pki, protection
        self.fresh()

    def fresh(self) -> None:
        self.c, self.s, self.link, self.recorded = recorded_pair(self.pki, 6, protection=self.protection,
                                                                 ping=5, ping_restart=30)

    def usable(self) -> "Pair":
        if self.c.closed or self.s.closed:
            self.fresh()
        return self


_pairs: dict = {}


def _pair(pki, protection) -> Pair:
    key = (id(pki), protection)
    if key not in _pairs:
        _pairs[key] = Pair(pki, protection)
    return _pairs[key].usable()


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 2000), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 2000), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 2000), st.just(0)),
    st.tuples(st.just("add"), st.binary(min_size=1, max_size=40), st.just(0)),
)


def _mutate(p: bytes, muts) -> bytes:
    b = bytearray(p)
    for kind, a, v in muts:
        if kind == "flip" and b:
            b[a % len(b)] ^= 1 << v
        elif kind == "set" and b:
            b[a % len(b)] = v
        elif kind == "cut":
            del b[a % (len(b) + 1):]
        elif kind == "add":
            b += a
    return bytes(b)


@pytest.mark.parametrize("protection", ["none", "tls-crypt"])
@PROP
@given(idx=st.integers(0, 10_000), muts=st.lists(mutation, min_size=1, max_size=4), to_server=st.booleans())
def test_mutated_packets_never_raise(pki, protection, idx, muts, to_server):  # noqa: F811
    pr = _pair(pki, protection)
    bad = _mutate(pr.recorded[idx % len(pr.recorded)], muts)
    target = pr.s if to_server else pr.c
    target.receive(bad, pr.link.now)          # must not raise
    target.handle_timer(pr.link.now + 1)
    target.take_outgoing()


@PROP
@given(text=st.text(min_size=0, max_size=300), from_server=st.booleans())
def test_authenticated_control_text_never_raises(pki, text, from_server):  # noqa: F811
    pr = _pair(pki, "none")
    sender, receiver = (pr.s, pr.c) if from_server else (pr.c, pr.s)
    sender._send_text(text)
    pr.link.run(lambda: False, max_steps=20)      # delivers it; must not raise


_OPTION_NAMES = ["ifconfig", "ifconfig-ipv6", "route", "route-ipv6", "topology", "route-gateway", "ping",
                 "ping-restart", "peer-id", "cipher", "auth", "tun-mtu", "compress", "comp-lzo",
                 "protocol-flags", "key-derivation", "auth-token", "auth-token-user", "explicit-exit-notify",
                 "push-continuation", "redirect-gateway", "dhcp-option"]
_ARG = st.one_of(st.integers(-2**40, 2**40).map(str),
                 st.sampled_from(["-1", "-5", "0", "16777215", "16777216", "4294967296", "65536", "99"]),
                 st.sampled_from(["", "x", "-", "1e3", "0x10", "255.255.255.0",
                                                                       "AES-256-GCM", "tls-ekm", "::1/64"]),
                 st.text(alphabet="abc019.:/-", max_size=12))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(opts=[("peer-id", ["16777216"])])
@example(opts=[("ping", ["-5"])])
@given(opts=st.lists(st.tuples(st.sampled_from(_OPTION_NAMES), st.lists(_ARG, max_size=3)), max_size=6))
def test_arbitrary_pushed_options_never_raise(pki, opts):  # noqa: F811
    c, s, _ = make_pair(pki, peer_id=None)      # the server adds no peer-id of its own
    pushed = ["ifconfig 198.19.0.2 255.255.255.0"] + [" ".join([n] + a).replace(",", " ") for n, a in opts]
    s.cfg.push_options = lambda _s: pushed
    link = Link(c, s)
    link.run(lambda: c.closed or s.closed or up(c, s), max_time=30)
    assert c.established or c.closed or not any(isinstance(e, ev.TunnelUp) for e in c.events)


@PROP
@given(idx=st.integers(0, 10_000), muts=st.lists(mutation, min_size=1, max_size=3), same_addr=st.booleans())
def test_dispatcher_mutated_packets_never_raise(dpki, idx, muts, same_addr):  # noqa: F811
    d, s, addr, recorded = _dispatcher(dpki)
    bad = _mutate(recorded[idx % len(recorded)], muts)
    d.receive(bad, addr if same_addr else ("198.18.0.200", 9), 3.0)    # must not raise
    d.handle_timer(3.5)
    d.take_outgoing()
    assert len([r for r in d.clients if r.session.established]) <= 1


_disp: dict = {}


def _dispatcher(dpki):  # noqa: F811
    st_ = _disp.get(id(dpki))
    if st_ is None or not st_[1].established or st_[1].closed or not st_[0].clients:
        d = _server(dpki, "none")
        s = _client(dpki, dpki["clients"][9], wrapping.PlainWrapper)
        addr = ("198.18.0.40", 1)
        recorded = connected_recording(d, s, addr)
        recorded += [bytes(s.encrypt(_icmp(s.pushed.ifconfig[0], "198.19.0.1"))) for _ in range(3)]
        st_ = _disp[id(dpki)] = (d, s, addr, recorded)
    return st_
