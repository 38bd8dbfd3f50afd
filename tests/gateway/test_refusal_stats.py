"""SIGUSR2's `statistics: held` line names the refused logins' remnants and their timer entries
(soak47: a soak reads them to see they stay level). A wrong password leaves one of each; after
REFUSAL_HOLD both are back to 0."""
from __future__ import annotations

import logging
import re
import signal

from appliance.openvpn.passdb import hash_password
from appliance.openvpn.refusals import REFUSAL_HOLD
from tests.gateway.conftest import World, client_conf, server_conf

PASSDB = f"alice:{hash_password('right')}\n"


def _held(gw, caplog) -> dict[str, int]:
    """The numbers of the `statistics: held` line SIGUSR2 logs now, by name."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vpn-appliance"):
        gw.ops.on_signal(signal.SIGUSR2)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("statistics: held"))
    return {k: int(v) for k, v in re.findall(r"([a-zA-Z][a-zA-Z -]*?) (\d+)(?:,|$)", line[len("statistics: held "):])}


def test_sigusr2_counts_a_refused_logins_remnant_and_its_timer(pki, caplog):
    w = World()
    gw = w.add_server(server_conf(pki, extra="auth-user-pass-verify /mem/passdb passdb\n"), PASSDB)
    assert _held(gw, caplog)["refusal remnants"] == 0
    seen: list[dict[str, int]] = []
    keep = gw.d.refusals.keep

    def keep_and_look(*a, **k):
        # The line in the wake-up that keeps the remnant: the client's ack can end it a moment
        # later, so this is the one time it is sure to be there.
        r = keep(*a, **k)
        seen.append(_held(gw, caplog))
        return r
    gw.d.refusals.keep = keep_and_look
    c = w.add_client(client_conf(pki, "client0", extra="auth-user-pass\nconnect-retry 300\n"),
                     username="alice", password="wrong")
    assert w.run(lambda: c.result is not None and seen, max_time=30), "the wrong password was not refused"
    assert seen[0]["refusal remnants"] == 1 and seen[0]["refusal timers"] == 1, seen
    w.run_for(REFUSAL_HOLD + 2)
    after = _held(gw, caplog)
    assert after["refusal remnants"] == 0 and after["refusal timers"] == 0, after
