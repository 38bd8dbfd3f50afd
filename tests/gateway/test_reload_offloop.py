"""A reload's reading runs off the loop (gateway/ops.py reload, gateway/reload_reader.py): the
config parsed, its key material and files checked, and the kept clients' client-config-dir files
read, in the reload's worker thread, while the loop goes on serving every client's packets under
the old config; what the reading gives applies whole, on the loop, once it is in. On the loop the
reading (~25 ms a reload, back to back in a SIGHUP storm; a ccd file per kept client) held every
tunnel. The reader here is made slow on purpose (it waits for the test): the loop must serve
meanwhile, and nothing of the new config may apply before the reading is in."""
from __future__ import annotations

import threading
import time

from appliance.gateway import ops as ops_mod
from tests.gateway.conftest import World, client_conf, ipv4_udp, server_conf
from tests.gateway.test_tunnel import SERVER_TUN, _up

ROUTE = 'push "route 198.18.99.0 255.255.255.0"\n'


def _world(pki):
    w = World()
    conf = server_conf(pki)
    gw, holder = w.add_reloadable_server(conf)
    gw.ops.reload_inline = False            # the worker thread, as a real server's
    for name in ("client0", "client1"):
        w.add_client(client_conf(pki, name))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    return w, gw, holder, conf


def _slow_source(holder: dict, gate: threading.Event, reads: list):
    """The reload's source, held until `gate` is set (a slow disk, a huge config): what it read
    is the file as it was when the reading started."""
    def read() -> str:
        text = holder["conf"]
        reads.append(threading.current_thread().name)
        gate.wait(30)
        return text
    return read


def _serve(w: World, gw, until=lambda: False, steps: int = 400, seconds: float = 30.0) -> int:
    """Step the pumps (the fake clock following the real one while they idle), client0 sending a
    packet to the server every few steps, for `steps` steps or until `until()`: how many of those
    packets the server's TUN got."""
    stun, ctun = w.server_net.tun, w.client_nets[0].tun
    sent: list[bytes] = []
    n, end = 0, time.monotonic() + seconds
    while n < steps and not until() and time.monotonic() < end:
        n += 1
        if n % 10 == 0:
            pkt = ipv4_udp(w.client_addr(0), SERVER_TUN, b"during-%d" % n)
            ctun.inject(pkt)
            sent.append(pkt)
        busy = gw.pump.step(block=False)
        for c in w.clients:
            busy = c.pump.step(block=False) or busy
        if not busy:
            time.sleep(0.001)
            w.clock.t += 0.001
    return sum(p in stun.written for p in sent)


def test_the_loop_serves_packets_while_a_reload_is_read_then_the_new_config_applies(pki, caplog):
    caplog.set_level("INFO")
    w, gw, holder, conf = _world(pki)
    gate, reads = threading.Event(), []
    gw.ops.reload_source = _slow_source(holder, gate, reads)
    holder["conf"] = conf + ROUTE
    old_opts, old_st = gw.opts, gw.st
    try:
        assert gw.ops.reload()
        got = _serve(w, gw, steps=400)
        assert reads and reads[0].startswith("reload"), f"the config was read in {reads}, not the reload's worker"
        assert got >= 20, f"only {got} of client0's 40 packets reached the server while the reload was read"
        assert gw.opts is old_opts and gw.st is old_st, "part of the new config applied before its reading was in"
        gate.set()
        _serve(w, gw, until=lambda: gw.opts is not old_opts and "clients kept" in caplog.text, steps=100_000)
        assert gw.opts is not old_opts, "the reload did not apply once read"
        assert any("198.18.99.0" in p for p in gw.st.push)
        # The new push line gives both clients other options: told RESTART, as at 2.6's SIGHUP.
        assert "re-read; 0 clients kept, 0 revoked ones disconnected, 2 told RESTART for their new options" \
            in caplog.text
    finally:
        gate.set()
        gw._cleanup()


def test_a_config_refused_after_a_slow_reading_leaves_the_server_as_it_was(pki, caplog):
    w, gw, holder, conf = _world(pki)
    gate, reads = threading.Event(), []
    gw.ops.reload_source = _slow_source(holder, gate, reads)
    holder["conf"] = conf + "no-such-directive 1\n"
    old_opts, old_st = gw.opts, gw.st
    try:
        assert gw.ops.reload()              # under way: its verdict comes with the reading
        gate.set()
        _serve(w, gw, until=lambda: not gw.ops._reload_busy, steps=100_000)
        assert "the new config is not used, the server runs on as it was" in caplog.text
        assert "server.conf:" in caplog.text and "no-such-directive" in caplog.text, caplog.text[-2000:]
        assert gw.opts is old_opts and gw.st is old_st
        assert all(r.alive for r in gw.d.clients) and len(gw.d.clients) == 2
        assert _serve(w, gw, steps=200) >= 10, "the tunnel stopped after a refused reload"
    finally:
        gate.set()
        gw._cleanup()


def test_reloads_asked_during_a_reading_are_one_that_follows_and_reads_the_file_anew(pki, caplog):
    """Two SIGHUPs (or management `signal SIGHUP`s) while one reload is read, the file replaced in
    between: one more reload follows the first, reading the file as it is then (not two readings
    at once, and not the first reading applied twice)."""
    w, gw, holder, conf = _world(pki)
    gate, reads = threading.Event(), []
    gw.ops.reload_source = _slow_source(holder, gate, reads)
    try:
        assert gw.ops.reload()
        _serve(w, gw, until=lambda: bool(reads), steps=100_000)
        holder["conf"] = conf + ROUTE          # replaced while the first reading is under way
        assert gw.ops.reload() and gw.ops.reload()
        assert "another follows it" in caplog.text
        _serve(w, gw, steps=100)
        assert len(reads) == 1, "a second reading started while the first was under way"
        gate.set()
        _serve(w, gw, until=lambda: gw.ops.reloads == 2 and not gw.ops._reload_busy, steps=100_000)
        _serve(w, gw, steps=100)
        assert gw.ops.reloads == 2 and len(reads) == 2, (gw.ops.reloads, reads)
        assert any("198.18.99.0" in p for p in gw.st.push), "the reload that followed did not read the new file"
        # The new push line gives both clients other options: each told RESTART once (by the
        # reload that read it), not once per reload asked for.
        assert caplog.text.count("the push lines changed: told RESTART") == 2, caplog.text[-3000:]
    finally:
        gate.set()
        gw._cleanup()


def test_kept_clients_ccd_files_are_read_in_the_worker_and_a_disable_drops_its_client(pki, tmp_path, monkeypatch,
                                                                                      caplog):
    """2.6's SIGHUP has every client connect again through its ccd file: a kept client whose file
    now says `disable` is disconnected, the others kept -- the files read in the reload's
    worker, the loop serving meanwhile (the reading held here until the test lets it go)."""
    w, gw, holder, conf = _world(pki)
    ccd = tmp_path / "ccd"
    ccd.mkdir()
    (ccd / "client1").write_text("disable\n")
    holder["conf"] = conf + f"client-config-dir {ccd}\n"
    gate, where = threading.Event(), []
    real = ops_mod.ccd_refusal

    def slow_refusal(read, exclusive, cn):
        where.append(threading.current_thread().name)
        gate.wait(30)
        return real(read, exclusive, cn)
    monkeypatch.setattr(ops_mod, "ccd_refusal", slow_refusal)
    recs = {r.common_name: r for r in gw.d.clients}
    try:
        assert gw.ops.reload()
        _serve(w, gw, until=lambda: bool(where), steps=100_000)
        assert gw.st.ccd is not None, "the new config did not apply before its pass"
        assert _serve(w, gw, steps=300) >= 15, "the loop did not serve while the ccd files were read"
        assert recs["client1"].alive, "a verdict applied before its file was read"
        gate.set()
        _serve(w, gw, until=lambda: "clients kept" in caplog.text, steps=100_000)
        assert set(where) and all(n.startswith("reload") for n in where), where
        assert not recs["client1"].alive, "the client whose ccd file says disable was kept"
        assert recs["client0"].alive
        assert "client-config-dir file for 'client1' says disable" in caplog.text
        assert "1 clients kept, 1 revoked ones disconnected" in caplog.text
    finally:
        gate.set()
        gw._cleanup()


def test_a_client_leaving_while_its_ccd_file_is_read_is_skipped(pki, tmp_path, monkeypatch, caplog):
    """A client that left while the worker read its file is not counted or acted on when the
    verdict comes in; the one still there is kept."""
    w, gw, holder, conf = _world(pki)
    ccd = tmp_path / "ccd"
    ccd.mkdir()
    (ccd / "client1").write_text("disable\n")
    holder["conf"] = conf + f"client-config-dir {ccd}\n"
    gate, where = threading.Event(), []
    real = ops_mod.ccd_refusal

    def slow_refusal(read, exclusive, cn):
        where.append(cn)
        gate.wait(30)
        return real(read, exclusive, cn)
    monkeypatch.setattr(ops_mod, "ccd_refusal", slow_refusal)
    recs = {r.common_name: r for r in gw.d.clients}
    try:
        assert gw.ops.reload()
        _serve(w, gw, until=lambda: bool(where), steps=100_000)
        gw.d.end(recs["client1"], "left")       # leaves while the files are read
        _serve(w, gw, steps=50)
        gate.set()
        _serve(w, gw, until=lambda: "clients kept" in caplog.text, steps=100_000)
        assert "says disable" not in caplog.text
        assert "1 clients kept, 0 revoked ones disconnected" in caplog.text, caplog.text[-2000:]
        assert recs["client0"].alive
    finally:
        gate.set()
        gw._cleanup()


class _Tap:
    """The management client's view of notifications (Management.notify), every flag on."""

    def __init__(self) -> None:
        self.got: list[str] = []

    def notify(self, lines: list[str], flag: str | None = None) -> None:
        self.got.extend(lines)

    def notify_env(self, block) -> None:
        self.notify(block.lines(0))

    def set_peer_ids(self, ids) -> None:
        pass

    def close(self) -> None:
        pass


def test_sighups_during_a_reading_keep_2_6s_order_down_reread_up_once_each(pki):
    """A SIGHUP is 2.6's restart: >UPDOWN:DOWN, the config read again, >UPDOWN:UP under the new
    config. With the reading in the worker, UP waits for it (its environment is the new
    config's: its `setenv`); a second SIGHUP during the reading is its own DOWN/re-read/UP after
    the first, never a DOWN inside the first's pair."""
    import signal
    w, gw, holder, conf = _world(pki)
    gate, reads = threading.Event(), []
    gw.ops.reload_source = _slow_source(holder, gate, reads)
    holder["conf"] = conf + "setenv RELOADED yes\n"
    # management-up-down (its `management` socket left out here: the notifications are tapped)
    gw.opts.management_up_down = True
    prepare = gw.ops._prepare_reload

    def prepare_with_up_down():
        p = prepare()
        p.new.management_up_down = True
        return p
    gw.ops._prepare_reload = prepare_with_up_down
    gw.ops.mgmt = tap = _Tap()
    try:
        gw.ops.on_signal(signal.SIGHUP)
        _serve(w, gw, until=lambda: bool(reads), steps=100_000)
        gw.ops.on_signal(signal.SIGHUP)
        _serve(w, gw, steps=100)
        assert [x for x in tap.got if x.startswith(">UPDOWN:") and "ENV" not in x] == [">UPDOWN:DOWN"]
        gate.set()
        _serve(w, gw, until=lambda: gw.ops.reloads == 2 and not gw.ops._reload_busy, steps=100_000)
        seq = [x.split(",")[0] if x.startswith(">UPDOWN:") else "STATE" for x in tap.got
               if (x.startswith(">UPDOWN:") and "ENV" not in x) or ",RECONNECTING,SIGHUP" in x]
        assert seq == [">UPDOWN:DOWN", "STATE", ">UPDOWN:UP"] * 2, seq
        up = tap.got.index(">UPDOWN:UP")
        assert ">UPDOWN:ENV,RELOADED=yes" in tap.got[up:tap.got.index(">UPDOWN:ENV,END", up)]
    finally:
        gate.set()
        gw.ops.mgmt = None
        gw._cleanup()


def test_a_sigterm_during_a_sighups_reading_says_down_once_then_exiting(pki):
    """Debian's 2.6 server, SIGHUP and SIGTERM back to back (or 0.02-3 s apart): >UPDOWN:DOWN
    once, then >STATE:...,EXITING,SIGTERM (after RECONNECTING,SIGHUP when its restart had begun).
    Ours said >UPDOWN:DOWN at the SIGHUP and again at the stop, and no EXITING."""
    import signal
    w, gw, holder, conf = _world(pki)
    gate, reads = threading.Event(), []
    gw.ops.reload_source = _slow_source(holder, gate, reads)
    gw.opts.management_up_down = True
    gw.ops.mgmt = tap = _Tap()
    try:
        gw.ops.on_signal(signal.SIGHUP)
        _serve(w, gw, until=lambda: bool(reads), steps=100_000)
        gw.ops.on_signal(signal.SIGTERM)
        _serve(w, gw, until=lambda: gw.result is not None, steps=100_000)
        assert gw.result is not None
        gate.set()                          # the reading ends after the SIGTERM: nothing applied, no UP
        _serve(w, gw, until=lambda: not gw.ops._reload_busy, steps=100_000)
        assert not gw.ops._reload_busy
        gw._cleanup()
        seq = [x.split(",")[0] if x.startswith(">UPDOWN:") else x.split(",")[1] for x in tap.got
               if (x.startswith(">UPDOWN:") and "ENV" not in x) or x.startswith(">STATE:")]
        assert seq == [">UPDOWN:DOWN", "EXITING"], seq
        assert [x for x in tap.got if ",EXITING," in x][0].endswith(",EXITING,SIGTERM,,,,,")
    finally:
        gate.set()
        gw.ops.mgmt = None


def test_a_plain_stop_says_down_then_exiting(pki):
    import signal
    w, gw, holder, conf = _world(pki)
    gw.opts.management_up_down = True
    gw.ops.mgmt = tap = _Tap()
    try:
        gw.ops.on_signal(signal.SIGINT)
        _serve(w, gw, until=lambda: gw.result is not None, steps=100_000)
        gw._cleanup()
        seq = [x.split(",")[0] if x.startswith(">UPDOWN:") else x.split(",")[1:3] for x in tap.got
               if (x.startswith(">UPDOWN:") and "ENV" not in x) or x.startswith(">STATE:")]
        assert seq == [">UPDOWN:DOWN", ["EXITING", "SIGINT"]], seq
    finally:
        gw.ops.mgmt = None
