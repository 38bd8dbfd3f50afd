"""learn-address for MACs (dev tap) under a hostile client racing the MAC's holder: what the
command is told must end as the switch decided, as with OpenVPN 2.6 (whose learn-address calls
follow its routing table). The real LearnAddress queue and the real Operations._ask_mac wiring
over a stand-in runner: each command's verdict is given by the test, in the order a race gives it.

The race: alice holds MAC M (learned, then quiet for MOVE_IDLE); bob sends one frame from M, so
`update M bob` runs; before its verdict alice sends from M again, so the switch keeps M with
alice. Before the fix the command was then told `delete M` (bob's undo) while alice kept sending
from M: a firewall-style learn-address script lost alice's MAC (her traffic blocked, or no longer
tracked), and her `delete` at her leaving never came. The same with bob leaving while his update
runs."""
from __future__ import annotations

import struct
from types import SimpleNamespace

from appliance.gateway import ops as ops_mod
from appliance.gateway.learn import LearnAddress
from appliance.openvpn.l2switch import MOVE_IDLE, SwitchDataPath
from tests.engine.test_l2switch import Disp

M = bytes.fromhex("02000000000a")
TEXT = "02:00:00:00:00:0a@0"


class Runner:
    def __init__(self) -> None:
        self.jobs: list = []

    def submit(self, key, argv, env, connect):
        self.jobs.append((key, list(argv)))
        return None


def world():
    d = Disp(quota=8)
    a, b = d.add("A", "alice"), d.add("B", "bob")
    sw = SwitchDataPath(d, lambda cipher, v2: None, False)
    clock = [0.0]
    runner = Runner()
    gw = SimpleNamespace(opts=SimpleNamespace(learn_address=["/la"]), dp=sw, clock=lambda: clock[0],
                         d=SimpleNamespace(learnable=lambda rec: []),
                         pump=SimpleNamespace(timers=SimpleNamespace(arm=lambda *a: None)))
    ops = SimpleNamespace(gw=gw, scripts=runner, info={}, env=None)
    ops.learn = LearnAddress(ops)
    sw.ask = lambda rec, mac: ops_mod.Operations._ask_mac(ops, rec, mac)
    sw.unlearn = lambda rec, mac: ops_mod.Operations._unlearn_mac(ops, rec, mac)
    sw.relearn = lambda rec, mac: ops_mod.Operations._relearn_mac(ops, rec, mac)
    return d, a, b, sw, clock, runner, ops.learn


def send(sw, addr, now):
    f = b"\xff" * 6 + M + struct.pack("!H", 0x0806) + b"x" * 46
    out: list = []
    sw.from_link(f, addr, now, out.append, {})
    return out


def finish(learn, runner, ok=True):
    """Give every command asked so far its verdict, in order; -> the command lines run."""
    lines = []
    while runner.jobs:
        (_, job), argv = runner.jobs.pop(0)
        lines.append(" ".join(argv[1:]))
        learn.done(job, ok, "")
    return lines


def view_of(lines):
    """What a learn-address script keeping a table (add/update set, delete removes) holds."""
    table: dict = {}
    for line in lines:
        op, mac, *cn = line.split()
        if op == "delete":
            table.pop(mac, None)
        else:
            table[mac] = cn[0]
    return table


def alice_holds_m_then_bob_asks(now_b):
    d, a, b, sw, clock, runner, learn = world()
    send(sw, "A", 0.0)
    lines = finish(learn, runner)
    assert lines == [f"add {TEXT} alice"] and send(sw, "A", 0.1)
    assert not send(sw, "B", now_b)                     # bob's frame from M: the command is asked
    assert [" ".join(argv[1:]) for _k, argv in runner.jobs] == [f"update {TEXT} bob"]
    return d, a, b, sw, clock, runner, learn, lines


def test_the_holder_sending_again_while_the_thief_is_asked_keeps_its_mac_in_the_commands_view():
    t = MOVE_IDLE + 1.0
    d, a, b, sw, clock, runner, learn, lines = alice_holds_m_then_bob_asks(t)
    assert send(sw, "A", t + 0.1)                       # alice again, before the verdict: still hers
    clock[0] = t + 0.2
    lines += finish(learn, runner)                      # the command said yes to bob...
    assert sw.macs.owner[M] is a and send(sw, "A", t + 0.3)     # ...but the switch kept M with alice
    assert view_of(lines) == {TEXT: "alice"}, lines
    d.forget(a)
    learn.left(a)
    lines += finish(learn, runner)
    assert view_of(lines) == {}, lines                  # her leaving deletes it


def test_the_thief_leaving_while_asked_leaves_the_holder_its_mac_in_the_commands_view():
    t = MOVE_IDLE + 1.0
    d, a, b, sw, clock, runner, learn, lines = alice_holds_m_then_bob_asks(t)
    d.forget(b)
    learn.left(b)
    clock[0] = t + 0.2
    lines += finish(learn, runner)
    assert sw.macs.owner[M] is a and send(sw, "A", t + 0.3)
    assert view_of(lines) == {TEXT: "alice"}, lines


def test_a_mac_quiet_for_move_idle_goes_to_the_new_sender_named_once():
    t = MOVE_IDLE + 1.0
    d, a, b, sw, clock, runner, learn, lines = alice_holds_m_then_bob_asks(t)
    clock[0] = t + 0.2
    lines += finish(learn, runner)
    assert sw.macs.owner[M] is b and send(sw, "B", t + 0.3) and not send(sw, "A", t + 0.3)
    assert lines[1:] == [f"update {TEXT} bob"]          # no naming of alice again
    d.forget(b)
    learn.left(b)
    lines += finish(learn, runner)
    assert view_of(lines) == {}, lines


def test_naming_the_holder_again_waits_for_room_in_a_full_runner():
    """The holder's `update` is never dropped for a full runner (as a delete): dropped, the
    command's view stayed with the client that lost the race."""
    t = MOVE_IDLE + 1.0
    d, a, b, sw, clock, runner, learn, lines = alice_holds_m_then_bob_asks(t)
    assert send(sw, "A", t + 0.1)
    retries: list = []
    learn.ops.gw.pump.timers.arm = lambda name, when, fn: retries.append(fn)
    full = [True]
    submit = runner.submit
    runner.submit = lambda *a: "too many scripts running" if full[0] else submit(*a)
    (_, job), argv = runner.jobs.pop(0)                 # bob's update, said yes while the runner is full
    lines.append(" ".join(argv[1:]))
    clock[0] = t + 0.2
    learn.done(job, True, "")
    assert retries, "alice's update was dropped, not kept for later"
    full[0] = False
    retries.pop()()
    lines += finish(learn, runner)
    assert view_of(lines) == {TEXT: "alice"}, lines
