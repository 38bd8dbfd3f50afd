"""The ops-reload fuzz target: a running server's status file and reloads (appliance/gateway/ops.py
`_write_status`, `reload` / `_prepare_reload` / `_commit_reload`, status.write_file), with a
client connected, driven by a script of file-system changes, SIGHUPs with changed configs, ccd
files changing and time passing.

Why a target: management and management-auth reach ops.py through commands; the status file and
reloads that change something were reached by no input (fuzz34's "still untaken"), though an
operator's slip there -- a status path made a directory, a FIFO, a full device, a ccd file with
junk, a reload with a bad line -- must not stop the server or drop its clients.

Input: steps split at SEP, each `op arg payload`; op % 6:
  0 the status path's state (arg % 6): a regular file, a directory, a FIFO without a reader, a
    symlink to /dev/full (every write fails: ENOSPC), removed, a dangling symlink;
  1 SIGHUP with a config variant (arg): the status line's path (status.log, a missing directory's
    file, a path under a regular file), interval (1/3/60 s), status-version 1..3, client-config-dir
    or not, no status line, a refused line (an unknown directive, a bad tls-cipher);
  2 client0's ccd file: the payload as its text (arg bit 0: removed instead; bit 1: a directory);
  3 time passes (arg % 16 + 0.5 s);
  4 SIGUSR2 (statistics);
  5 a reload with the current config (nothing changed).

Oracles, after each step:
- no internal error in the dispatcher or the server's pump; nothing escapes;
- a reload is refused exactly when the new config is (parse_config and the start-up check raise
  ConfigError): then the server runs on with the Options it had; accepted, the new status line
  is in force;
- client0 stays connected (no ccd file written or made a directory by the input: a reload in
  place keeps clients; one whose ccd file cannot be read or parsed is refused since reload44);
- when the status path is a writable place (a regular file or nothing, its directory there) and
  a full interval has passed since the last change, the file holds a whole status list of the
  version in force (its header, END last) naming client0;
- a status failure is logged once per kind of failure: at most one warning per change the
  input made (status path state, reload), plus one.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal

from tests.fuzz.scratch import scratch_dir

SEP = b"\xfe\xfd"


def _reset_path(p: str) -> None:
    if os.path.islink(p) or os.path.isfile(p) or (os.path.exists(p) and not os.path.isdir(p)):
        os.unlink(p)
    elif os.path.isdir(p):
        shutil.rmtree(p)


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.status = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("status file "):
            self.status += 1


def make_ops_reload():
    from appliance.openvpn.config import parse_config
    from appliance.openvpn.errors import ConfigError
    from appliance.openvpn.settings import check_key_material
    from tests.fuzz.mgmt_world import _pki
    from tests.gateway.conftest import World, client_conf, server_conf
    log = logging.getLogger("vpn-appliance")
    d = scratch_dir("fuzz-ops-reload-")
    pki = _pki()
    status = os.path.join(d, "status.log")
    ccd_dir = os.path.join(d, "ccd")
    paths = (status, os.path.join(d, "missing", "status.log"), os.path.join(d, "plain", "status.log"))

    def conf(arg: int) -> tuple[str, tuple[str, int] | None, int]:
        path = paths[arg % 3]
        every = (1, 3, 60)[(arg >> 2) % 3]
        version = 1 + (arg >> 4) % 3
        extra = "" if arg & 0x40 and arg & 0x80 else f"status {path} {every}\nstatus-version {version}\n"
        extra += f"client-config-dir {ccd_dir}\n" if (arg >> 6) % 2 else ""
        if arg & 0x80 and not arg & 0x40:
            extra += ("no-such-directive 1\n", "tls-cipher NOT-A-CIPHER\n")[arg & 1]
        return server_conf(pki, extra=extra), ((path, every) if "status " in extra else None), version

    def world():
        for p in (status, ccd_dir, os.path.join(d, "plain"), os.path.join(d, "missing")):
            if os.path.lexists(p):
                _reset_path(p)
        os.mkdir(ccd_dir)
        with open(os.path.join(d, "plain"), "w") as f:
            f.write("a file, not a directory\n")
        text, _st, _v = conf(0)
        w = World()
        gw = w.add_server(text, path=os.path.join(d, "server.conf"))
        state = {"conf": text}
        gw.ops.reload_source = lambda: state["conf"]
        w.add_client(client_conf(pki, "client0"))
        if not w.run(lambda: bool(gw.d.clients) and gw.d.clients[0].session.established, max_time=30):
            raise RuntimeError("ops-reload fuzz world: the client did not come up")
        return w, gw, state

    def connected(gw) -> bool:
        return any(r.session.established for r in gw.d.clients)

    def one(data: bytes) -> None:
        w, gw, state = world()
        warn = _Warnings()
        log.addHandler(warn)
        old_level = log.level
        log.setLevel(logging.WARNING)
        changes = 0
        wrote_ccd = False
        settled_at = w.clock.t            # the status path or interval last changed
        try:
            for step in data.split(SEP)[:24]:
                if len(step) < 2:
                    continue
                op, arg, payload = step[0] % 6, step[1], step[2:]
                if op == 0:
                    changes += 1
                    settled_at = w.clock.t
                    _reset_path(status)
                    kind = arg % 6
                    if kind == 0:
                        open(status, "w").close()
                    elif kind == 1:
                        os.mkdir(status)
                    elif kind == 2:
                        os.mkfifo(status)
                    elif kind == 3:
                        os.symlink("/dev/full", status)
                    elif kind == 5:
                        os.symlink(os.path.join(d, "gone", "x"), status)
                elif op in (1, 5):
                    text, st, _v = conf(arg) if op == 1 else (state["conf"], gw.opts.status, gw.opts.status_version)
                    try:
                        want = parse_config(text, os.path.join(d, "server.conf"))
                        check_key_material(want)
                    except ConfigError:
                        want = None
                    before = gw.opts
                    state["conf"] = text if want is not None else state["conf"]
                    if want is None:
                        gw.ops.reload_source = (lambda t: lambda: t)(text)
                    gw.ops.on_signal(signal.SIGHUP)
                    w.run_for(0.2)
                    gw.ops.reload_source = lambda: state["conf"]
                    changes += 1
                    if want is None:
                        assert gw.opts is before, "a refused config was applied"
                    else:
                        assert gw.opts.status == want.status, f"status {gw.opts.status} after a reload to {want.status}"
                        if before.status != want.status:
                            settled_at = w.clock.t
                elif op == 2:
                    ccd = os.path.join(ccd_dir, "client0")
                    if os.path.lexists(ccd):
                        _reset_path(ccd)
                    if arg & 2:
                        os.mkdir(ccd)
                        wrote_ccd = True    # unreadable: a reload refuses client0 (reload44)
                    elif not arg & 1:
                        with open(ccd, "wb") as f:
                            f.write(payload[:512])
                        wrote_ccd = True
                elif op == 3:
                    w.run_for(arg % 16 + 0.5)
                else:
                    gw.ops.on_signal(signal.SIGUSR2)
                errs = gw.d.take_internal_errors()
                assert not errs, f"the server's internal errors: {errs!r}"
                n = gw.faults.counts.get("internal error", 0)
                assert not n, f"{n} internal errors counted by the server's pump"
                assert gw.result is None, f"the server stopped: {gw.result}"
                if not wrote_ccd:
                    assert connected(gw), "client0 dropped"
                _check_status(gw, w, settled_at)
            assert warn.status <= changes + 1, f"{warn.status} status-file warnings for {changes} changes"
        finally:
            log.removeHandler(warn)
            log.setLevel(old_level)
            try:
                gw.ops.close()
            except OSError:
                pass
    return one


def _check_status(gw, w, settled_at: float) -> None:
    st = gw.opts.status
    if st is None:
        return
    path, every = st
    if w.clock.t < settled_at + every + 0.5 or not os.path.isdir(os.path.dirname(path)):
        return
    if os.path.lexists(path) and (os.path.islink(path) or not os.path.isfile(path)):
        return
    if not any(r.session.established for r in gw.d.clients):
        return
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", "replace")
    lines = text.splitlines()
    v = gw.opts.status_version
    head = "OpenVPN CLIENT LIST" if v == 1 else "TITLE"
    assert lines and lines[0].startswith(head), f"status v{v} begins {lines[:1]!r}"
    assert lines[-1] == "END", f"status v{v} ends {lines[-1:]!r}"
    assert "client0" in text, "client0 missing from the status file"


def seeds() -> list[bytes]:
    def s(*steps: bytes) -> bytes:
        return SEP.join(steps)
    return [
        s(b"\x03\x05"),
        s(b"\x00\x01", b"\x03\x05", b"\x00\x00", b"\x03\x05"),              # a directory, then a file again
        s(b"\x00\x02", b"\x03\x05"),                                         # a FIFO
        s(b"\x00\x03", b"\x03\x05", b"\x03\x05", b"\x00\x04", b"\x03\x05"),  # /dev/full, then removed
        s(b"\x00\x05", b"\x03\x05"),
        s(b"\x01\x01", b"\x03\x05"), s(b"\x01\x02", b"\x03\x05"),            # missing dir, under a file
        s(b"\x01\x14", b"\x03\x05"), s(b"\x01\x24", b"\x03\x05"),            # status-version 2, 3
        s(b"\x01\x80", b"\x03\x02"), s(b"\x01\x81", b"\x03\x02"),            # refused reloads
        s(b"\x01\xc0", b"\x03\x02"),                                         # status taken away
        s(b"\x01\x40", b"\x02\x00push \"route 198.18.100.0 255.255.255.0\"\nifconfig-push 198.19.0.50 255.255.255.0\n",
          b"\x05\x00", b"\x03\x03"),
        s(b"\x01\x40", b"\x02\x00disable\n", b"\x05\x00", b"\x03\x03"),
        s(b"\x01\x40", b"\x02\x02", b"\x05\x00", b"\x03\x03"),
        s(b"\x04\x00", b"\x05\x00", b"\x03\x01"),
    ]
