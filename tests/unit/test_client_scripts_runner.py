"""The client scripts' runner (gateway/client_scripts.py ClientScripts) off the event loop: a
submit returns at once however long the script takes, results come through its wake-up
descriptor in the order submitted, and close() kills a hanging script with its process group
without waiting for it."""
from __future__ import annotations

import select
import time

from appliance.gateway.client_scripts import ClientScripts


def _script(tmp_path, name: str, body: str):
    s = tmp_path / name
    s.write_text("#!/bin/sh\n" + body)
    s.chmod(0o755)
    return str(s)


def _wait_results(r: ClientScripts, n: int, within: float) -> list:
    out: list = []
    end = time.monotonic() + within
    while len(out) < n and time.monotonic() < end:
        if select.select([r.fileno()], [], [], 0.2)[0]:
            r.drain()
            out += r.take_results()
    return out


def test_a_slow_script_holds_no_caller_and_order_is_kept(tmp_path):
    r = ClientScripts(time_limit=5)
    try:
        t0 = time.monotonic()
        r.submit("up", [_script(tmp_path, "slow", "sleep 0.5\n")], {})
        r.submit("route-up", [_script(tmp_path, "fail", "exit 4\n")], {})
        assert time.monotonic() - t0 < 0.2 and r.busy
        assert _wait_results(r, 2, 10) == [("up", True), ("route-up", False)]
        assert not r.busy
    finally:
        r.close()


def test_a_hanging_script_is_killed_at_its_limit(tmp_path):
    r = ClientScripts(time_limit=0.5)
    try:
        r.submit("up", [_script(tmp_path, "hang", "sleep 30\n")], {})
        assert _wait_results(r, 1, 10) == [("up", False)]
    finally:
        r.close()


def test_close_does_not_wait_for_a_hanging_script(tmp_path):
    r = ClientScripts(time_limit=30)
    r.submit("ipchange", [_script(tmp_path, "hang", "sleep 30\n")], {})
    time.sleep(0.3)
    t0 = time.monotonic()
    r.close()
    assert time.monotonic() - t0 < 1.0


def test_the_first_tunnels_scripts_are_never_skipped(tmp_path):
    """A server reconnecting faster than a slow ipchange ends fills the queue: later ipchanges
    are skipped, the first tunnel's up (and route-up) still run."""
    from appliance.gateway.client_scripts import MAX_PENDING
    r = ClientScripts(time_limit=5)
    try:
        slow = _script(tmp_path, "slow", "sleep 0.05\n")
        for _ in range(MAX_PENDING + 3):
            r.submit("ipchange", [slow], {})
        assert not r.submit("ipchange", [slow], {})
        assert r.submit("up", [_script(tmp_path, "up", "exit 0\n")], {}, keep=True)
        assert r.submit("route-up", [_script(tmp_path, "rup", "exit 3\n")], {}, keep=True)
        got = _wait_results(r, MAX_PENDING + 2, 15)
        assert got[-2:] == [("up", True), ("route-up", False)]
    finally:
        r.close()


def test_the_plan_queues_the_first_tunnels_scripts_past_a_full_queue():
    from types import SimpleNamespace

    from appliance.gateway.client_scripts import END_ROOT, MAX_PENDING, ClientScriptPlan
    r = ClientScripts(inline=True)
    queued: list = []
    r._job = lambda kind, argv, env: queued.append(kind) or True     # noqa: SLF001 - nothing runs
    r.pending = MAX_PENDING                                          # slow ipchanges still waiting
    opts = SimpleNamespace(script_security=2, route_up_script=["/bin/true"], route_pre_down_script=None,
                           ipchange_script=["/bin/true"], up_script=["/bin/true"], up_restart=False)
    updown = SimpleNamespace(plugin_env={"dev": "tun0", "tun_mtu": "1500"}, mgmt_env={},
                             connection_env=lambda session, remote: {})
    plan = ClientScriptPlan(opts, updown, r)
    plan.connected(SimpleNamespace(), ("198.18.0.1", 1194))          # skipped: the queue is full
    plan.up(True)
    assert queued == ["up", "route-up", END_ROOT]


def _plan(pending: int, **opt):
    """A plan over an inline runner whose jobs only record (kind, env's dev); `pending` slow
    scripts already waiting. The run's first tunnel was up before (a later one is bounded)."""
    from types import SimpleNamespace

    from appliance.gateway.client_scripts import ClientScriptPlan
    r = ClientScripts(inline=True)
    queued: list = []
    r._job = lambda kind, argv, env: queued.append(kind) or True     # noqa: SLF001 - nothing runs
    r.pending = pending
    o = dict(script_security=2, route_up_script=["/bin/true"], route_pre_down_script=["/bin/true"],
             ipchange_script=None, up_script=["/bin/true"], down_script=["/bin/true"],
             down_root=[("/bin/true", ["true"])], up_restart=False)
    o.update(opt)
    updown = SimpleNamespace(plugin_env={"dev": "tun0", "tun_mtu": "1500"}, mgmt_env={})
    plan = ClientScriptPlan(SimpleNamespace(**o), updown, r)
    plan.first_queued = True
    return plan, r, queued


def test_a_reconnect_s_up_side_is_queued_whole_and_its_down_side_always_follows():
    """A server reconnecting faster than the scripts end (without persist-tun): a tunnel's up
    side queued when one slot was left had its route-up skipped, and its closing side (the root
    down-root command, route-pre-down, down: what undoes the up's firewall or DNS) skipped as the
    queue was full -- the up ran, its down never did, unlike 2.6 where each runs in turn."""
    from appliance.gateway.client_scripts import DOWN_ROOT, MAX_PENDING
    plan, r, queued = _plan(MAX_PENDING - 1)
    plan.up(True)
    plan.closing("ping-restart")
    assert queued == ["up", "route-up", "route-pre-down", DOWN_ROOT, "down"]


def test_a_skipped_up_side_skips_its_down_side_and_the_queue_stays_bounded():
    from appliance.gateway.client_scripts import MAX_PENDING
    plan, r, queued = _plan(MAX_PENDING - 1)
    for _ in range(200):                                 # nothing drains: a hanging script
        plan.up(True)
        plan.closing("ping-restart")
    assert len(queued) == 5 and r.pending <= MAX_PENDING + 5


def test_a_down_root_only_config_is_bounded_too():
    from appliance.gateway.client_scripts import DOWN_ROOT, MAX_PENDING
    plan, r, queued = _plan(MAX_PENDING - 1, up_script=None, route_up_script=None, route_pre_down_script=None,
                            down_script=None)
    for _ in range(200):
        plan.up(True)
        plan.closing("ping-restart")
    assert queued == [DOWN_ROOT] and r.pending == MAX_PENDING


def test_the_end_runs_a_closing_side_still_queued_behind_a_hanging_script(tmp_path):
    """A reconnect's closing side (route-pre-down, the down-root command, down) queued behind a
    slow script, then the client stopped (SIGTERM): close() dropped it with the rest, the end had
    no tunnel left to close (the reconnect forgot it), so the root down command never ran for a
    tunnel whose up had run. 2.6 ran it at the reconnect, in turn."""
    from appliance.gateway.client_scripts import DOWN_ROOT
    r = ClientScripts(time_limit=30)
    ran: list = []
    r.down_root = lambda env: ran.append(env["dev"]) or True
    out = tmp_path / "out"
    try:
        r.submit("up", [_script(tmp_path, "hang", "sleep 30\n")], {})
        time.sleep(0.2)
        r.submit("route-pre-down", [_script(tmp_path, "rpd", f"echo rpd >> {out}\n")], {"dev": "tun0"})
        r.submit(DOWN_ROOT, [], {"dev": "tun0"})
        r.submit("down", [_script(tmp_path, "down", f"echo down >> {out}\n")], {"dev": "tun0"})
        r.submit("up", [_script(tmp_path, "up2", f"echo up2 >> {out}\n")], {"dev": "tun0"})   # the next tunnel's
        r.submit(DOWN_ROOT, [], {"dev": "tun1"})                                               # its up never ran
    finally:
        t0 = time.monotonic()
        r.close()
    assert time.monotonic() - t0 < 10
    assert ran == ["tun0"]
    assert out.read_text().splitlines() == ["rpd", "down"]


def test_a_maximal_push_cannot_keep_the_up_script_from_running(tmp_path, caplog):
    """A server's push at our parser's bounds -- 1,024 `dhcp-option`s, each filling a 2,047-byte
    push-continuation message (2.6 cuts a pushed option at 255 bytes, ours takes ~2,000) -- made
    ~2 MB of foreign_option_N, and with a server certificate's variables the environment passed
    the kernel's limit (E2BIG): the up script could not start, which ends the client's run (a
    failed up is fatal, no reconnect, no next remote). Now the largest variables are left out
    (said) until the rest fits, as for the root helpers (down_root.encode)."""
    from appliance.gateway.client_scripts import run_script
    from appliance.openvpn.keymethod import MAX_TEXT_MESSAGE, parse_push_reply_untrusted
    p = None
    for i in range(1024):
        head, tail = "PUSH_REPLY,dhcp-option DOMAIN ", ",push-continuation " + ("2" if i < 1023 else "1")
        p = parse_push_reply_untrusted(head + "d" * (MAX_TEXT_MESSAGE - len(head) - len(tail)) + tail, p)
    env = {"dev": "tun0", **{f"foreign_option_{i}": f"dhcp-option {k} {v}" for i, (k, v) in enumerate(p.dhcp_options, 1)},
           **{f"X509_0_OU_{i}": "u" * 60 for i in range(100)}, "ifconfig_local": "198.18.9.2"}
    out = tmp_path / "out"
    up = _script(tmp_path, "up", f'echo "$dev $ifconfig_local $X509_0_OU_1" > {out}\n')
    assert run_script("up", [up], env, 10)
    assert out.read_text().split() == ["tun0", "198.18.9.2", "u" * 60]
    assert "left out" in caplog.text
