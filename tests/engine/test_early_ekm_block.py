"""The client's TLS-EKM key block, exported early (roles.ClientRole.got_key_method: when the
key-method messages are read, while the server builds its push; README, firstpkt49) and kept on
the first key state until the push says how the data keys are made. Whatever the push says, the
block leaves the key state then: a server pushing the PRF derivation (one without TLS-EKM, or one
refusing it) leaves no unused key material behind, and the data keys are the PRF's. A key state
that retires drops it with its TLS session and key-method secrets. In memory, our two engines."""
from __future__ import annotations

from appliance.openvpn import events as ev
from appliance.openvpn.keys import KEY_BLOCK_LEN
from appliance.openvpn.keystate import KS
from tests.engine.test_memory_link import Link, make_pair, payloads, pki, up  # noqa: F401 - pki: the fixture


def _block_before_the_push(c, s, link) -> bytes | None:
    """Run the pair up; the first key's early block as it stood when PUSH_REPLY was read (None if
    it was not there, or no push came)."""
    seen: list = []
    real = c.role.text_message

    def text_message(ks, text, now):        # the moment just before PUSH_REPLY is read
        if text.startswith("PUSH_REPLY") and not seen:
            seen.append(ks.ekm_block)
        real(ks, text, now)
    c.role.text_message = text_message
    link.run(lambda: up(c, s))
    return seen[0] if seen else None


def test_a_prf_push_drops_the_early_block_and_the_data_keys_are_the_prfs(pki):
    c, s, _ = make_pair(pki, server_ekm=False)          # a server without TLS-EKM: it pushes none
    link = Link(c, s)
    early = _block_before_the_push(c, s, link)
    assert up(c, s)
    assert early is not None and len(early) == KEY_BLOCK_LEN, "the client offered TLS-EKM: exported early"
    tu = next(e for e in c.events if isinstance(e, ev.TunnelUp))
    assert tu.key_derivation == "prf" and not c.ekm
    assert c.keys[0].ekm_block is None, "the unused TLS-EKM block was left in the key state"
    data = payloads(10)
    assert link.send(c, s, data) == data and link.send(s, c, data) == data


def test_an_ekm_push_takes_the_block_and_the_keys_agree(pki):
    c, s, _ = make_pair(pki)
    link = Link(c, s)
    early = _block_before_the_push(c, s, link)
    assert up(c, s) and c.ekm and early is not None
    assert c.keys[0].ekm_block is None
    data = payloads(10)
    assert link.send(c, s, data) == data and link.send(s, c, data) == data


def test_a_retired_key_state_keeps_no_block(pki):
    c, s, _ = make_pair(pki)
    ks = c.keys[0]
    ks.ekm_block = bytes(KEY_BLOCK_LEN)
    ks.retire(1.0)
    assert ks.ekm_block is None and ks.tls is None and ks.local_km is None
