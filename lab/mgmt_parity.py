"""The management interface line for line beside Debian's OpenVPN 2.6 (helper mgmt41).

The same server config (tun or tap, UDP) is run with Debian's openvpn and with ours, each with
one or two Debian openvpn clients connected; the same byte sequences go to both management
sockets and the transcripts are compared after masking what must differ (times, byte counts,
PIDs, versions, log texts). Client mode likewise: Debian's client's management interface beside
ours, against one Debian server. tests/interop/test_mgmt_parity_vs_openvpn.py runs a subset in
CI; this module run as a program runs everything and prints each difference:

    sudo .venv/bin/python -m lab.mgmt_parity [--only tun|tap|auth|client|hostile|hostile2] [--out FILE]

A transcript is a list of (label, lines): the label is the command sent, the lines are what came
back until the reply's last line (SUCCESS:/ERROR:/END) and a short quiet spell after it, the
notifications (`>...`) among them in their place, all masked (mask()).
"""
from __future__ import annotations

import re
import select
import socket
import sys
import time
from pathlib import Path

from .configs import client_profile, server_config
from .netns import Lab, Proc

Transcript = list[tuple[str, list[str]]]

# ------------------------------------------------------------------ talking to a management socket


class Wire:
    """A management client at the byte level: raw bytes out (NULs, CRs, long lines as sent),
    CRLF-separated lines in, notifications kept in order with the replies."""

    def __init__(self, path: str, proc: Proc | None = None, within: float = 60) -> None:
        self.s = socket.socket(socket.AF_UNIX)
        end = time.monotonic() + within
        while True:
            try:
                self.s.connect(path)
                break
            except OSError:
                if time.monotonic() > end or (proc is not None and not proc.alive()):
                    self.s.close()
                    raise AssertionError(f"no management socket {path}:\n{proc.log()[-2000:] if proc else ''}")
                time.sleep(0.1)
        self.s.settimeout(0.01)      # how late a `quiet` window may end (0.05 before: ~0.01 s an exchange)
        self.buf = b""
        self.closed = False

    def read(self, quiet: float = 0.3, limit: float = 3.0, until_reply: bool = True) -> list[str]:
        """Lines until a reply's last line came (if until_reply) and then `quiet` s without a byte,
        or `limit` s in all."""
        out: list[str] = []
        end = time.monotonic() + limit
        replied = not until_reply
        last = time.monotonic()
        while time.monotonic() < end and not self.closed:
            if replied and time.monotonic() - last >= quiet:
                break
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                d = b""
            if not d:
                self.closed = True
                break
            last = time.monotonic()
            self.buf += d
            *done, self.buf = self.buf.split(b"\r\n")
            for raw in done:
                line = raw.decode("utf-8", "replace")
                out.append(line)
                if not line.startswith(">") and (line.startswith(("SUCCESS:", "ERROR:")) or line == "END"):
                    replied = True
                elif line.startswith(">PKCS11ID-ENTRY:"):     # pkcs11-id-get's whole reply (2.6's too)
                    replied = True
        return out

    def drain(self) -> None:
        """Drop what is already here (what came unasked belongs to no command), waiting for
        nothing: the read before ended on `quiet` s without a byte, so a wait here (it was 0.05
        s a command, ~7 of the parity test's 30 s) would only move where a late line is dropped."""
        while not self.closed and select.select([self.s], [], [], 0)[0]:   # (recv would wait out the timeout)
            try:
                d = self.s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                d = b""
            if not d:
                self.closed = True
                break
            self.buf += d
        self.buf = self.buf.rsplit(b"\r\n", 1)[1] if b"\r\n" in self.buf else self.buf

    def exchange(self, raw: bytes, quiet: float = 0.3, limit: float = 1.5) -> list[str]:
        self.drain()
        try:
            self.s.sendall(raw)
        except OSError:
            self.closed = True
            return ["<closed>"]
        out = self.read(quiet, limit)
        return out + (["<closed>"] if self.closed else [])

    def close(self) -> None:
        self.s.close()


# ------------------------------------------------------------------ masking what must differ

_MASKS = [
    (re.compile(r"^(Management Interface for |OpenVPN Version: |TITLE[,\t])?OpenVPN 2\.6\.\d+ .*"), r"\1<VERSION>"),
    (re.compile(r"^(TITLE[,\t]).*"), r"\1<VERSION>"),
    (re.compile(r"pid=\d+"), "pid=<PID>"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"), "<T>"),
    (re.compile(r"^(>LOG:|>ECHO:|>STATE:|>INFO:|>PASSWORD:|>HOLD:)?\d{9,10},"), r"\1<T>,"),
    (re.compile(r"(?<![\w.:])\d{9,10}(?![\d.])"), "<T>"),
    (re.compile(r"bytesin=\d+,bytesout=\d+"), "bytesin=<N>,bytesout=<N>"),
    (re.compile(r"^(>BYTECOUNT(?:_CLI)?:(?:\d+,)?)\d+,\d+$"), r"\1<N>,<N>"),
    (re.compile(r"^((?:TUN/TAP|TCP/UDP|Auth|pre-compress|post-compress|pre-decompress|post-decompress) "
                r"(?:read|write) bytes),\d+$"), r"\1,<N>"),
    (re.compile(r"(Max bcast/mcast queue length[,\t])\d+"), r"\1<N>"),
    (re.compile(r"(bytes_(?:received|sent)=)\d+"), r"\1<N>"),
    (re.compile(r"((?:trusted|untrusted)_port=)\d+"), r"\1<PORT>"),
    (re.compile(r"198\.18\.6\.2:\d+"), "198.18.6.2:<PORT>"),      # client2's port: its own choice
    (re.compile(r"(?<![\w:])(?:[0-9a-f]{2}:){5}[0-9a-f]{2}@"), "<MAC>@"),     # tap clients' random MACs
]
LOG_LINE = re.compile(r"^(>LOG:)?<T>,[IFNWD]*,")


def mask(line: str) -> str:
    for rx, to in _MASKS:
        line = rx.sub(to, line)
    if LOG_LINE.match(line):          # log texts are each program's own: their shape is compared
        return (">LOG:" if line.startswith(">LOG:") else "") + "<T>,<FLAGS>,<TEXT>"
    parts = re.split(r"([,\t])", line)
    if parts and parts[0] == "CLIENT_LIST" and len(parts) > 12:
        parts[10] = parts[12] = "<N>"               # bytes received, sent
    elif len(parts) == 9 and parts[0].startswith("client") and re.fullmatch(r"[\d.]+:(\d+|<PORT>)", parts[2]):
        parts[4] = parts[6] = "<N>"                 # status 1 client rows: CN,addr,in,out,since
    return "".join(parts)


ROWS = re.compile(r"^(CLIENT_LIST|ROUTING_TABLE)[,\t]|^client\d,|^198\.19\.|^<MAC>@|^>BYTECOUNT_CLI:")


def squeeze(lines: list[str]) -> list[str]:
    """Masked, with runs of the same masked line kept once (log histories differ in length),
    >LOG / >BYTECOUNT notifications, whose count is timing, once each, and each run of client or
    routing rows sorted (OpenVPN 2.6 lists them in its hash table's order, seeded at random)."""
    out: list[str] = []
    seen_async: set[str] = set()
    for line in (mask(x) for x in lines):
        if line.startswith((">LOG:", ">BYTECOUNT")):
            if line in seen_async:
                continue
            seen_async.add(line)
        if out and out[-1] == line:
            continue
        out.append(line)
    i = 0
    while i < len(out):
        j = i
        while j < len(out) and ROWS.match(out[j]):
            j += 1
        out[i:j] = sorted(out[i:j])
        i = j + 1
    return out


def diff(theirs: Transcript, ours: Transcript) -> list[str]:
    """One entry per step whose masked lines differ: what a program parsing the output would see."""
    out = []
    for (label, t), (label2, o) in zip(theirs, ours):
        assert label == label2, (label, label2)
        st, so = squeeze(t), squeeze(o)
        if st != so:
            out.append(f"--- {label!r}\n  OpenVPN: {st}\n  ours:    {so}")
    return out


# ------------------------------------------------------------------ the command sequences

LONG = b"echo " + b"x" * 300          # past OpenVPN's 256-byte command buffer
VERY_LONG = b"pid " + b"y" * 20_000

# The commands a tool may send to a server, in order; those whose reply depends on clients that
# come and go (kill, client-kill) last.
SERVER_STEPS: list[tuple[str, bytes]] = [(c, c.encode() + b"\n") for c in [
    "help", "version", "pid", "state", "state off", "state on", "state all", "state 3", "state foo",
    "status", "status 1", "status 2", "status 3", "status 4", "status 1 2", "load-stats", "load-stats x",
    "log on", "log off", "log all", "log 2", "log on all", "log off", "log foo", "log",
    "echo", "echo on", "echo all", "echo 3", "echo off", "echo foo", "echo on x",
    "bytecount", "bytecount x", "bytecount -1", "bytecount 0", "bytecount 0 0",
    "verb", "verb 3", "verb x", "verb 3 4", "mute", "mute 5", "mute 0",
    "hold", "hold on", "hold off", "hold release", "hold foo",
    "signal", "signal SIGFOO", "signal sigusr2", "signal SIGUSR2 x",
    "kill", "kill nobody", "kill 1.2.3.4:5", "kill foo:5", "kill 1.2.3.4:0", "kill 1.2.3.4:70000", "kill 198.18.0.2:1", "kill a b", "kill 1.2.3.4:x",
    # helper mgmt42: what 2.6's man_kill makes of IPv6 and other odd addresses
    "kill 2001:db8::1:5", "kill ::1", "kill [::1]:5", "kill 1.2.3:5", "kill 1.2.3.4:5:6", "kill 001.2.3.4:05",
    "kill 1.2.3.4:5x", "kill a:", "pkcs11-id-get", "pkcs11-id-get 3",
    # review44c: a name past man_kill's 128-byte field (its 129th byte skipped, the rest a port)
    "kill " + "a" * 127 + "xyz", "kill " + "1" * 129 + ":5", "kill " + "1" * 130 + ":5",
    "client-kill", "client-kill x", "client-kill 99", "client-kill 99 HALT",
    "client-auth", "client-auth 0", "client-auth-nt 99 1", "client-auth-nt 0", "client-auth-nt x 1",
    "client-deny 99 1 no", "client-deny 0", "client-pending-auth 99 1 x 30", "client-pending-auth 0 1",
    "env-filter", "env-filter 1", "env-filter 9",
    "username Auth u", "password Auth p", "needok x ok", "needstr x y", "remote ACCEPT", "proxy NONE",
    "needok", "needstr x", "username x", "remote", "proxy", "auth-retry", "auth-retry foo", "remote-entry-get",
    "cr-response", "test", "version 3", "client-kill 99 2 3 4", "status x", "state 0", "log 0", "echo all",
    "forget-passwords", "cr-response abc", "pkcs11-id-count", "rsa-sig", "pk-sig", "certificate",
    "remote-entry-count", "remote-entry-get 0", "net", "auth-retry none", "test 3", "foo", "FOO",
    "VERSION", "Pid", "", " ", "\t", "pid extra", "version extra", "help extra", '"pid"', "'pid'", "pid \"x y\"",
    "pid \\", "echo \"unterminated",
]] + [
    ("client-auth 99 1 + END", b"client-auth 99 1\nEND\n"),
    ("client-auth 99 1 + lines + END", b"client-auth 99 1\npush \"route 10.9.0.0 255.255.0.0\"\nfoo\nEND\n"),
    ("client-auth x 1 + END", b"client-auth x 1\nEND\n"),
    ("long line (305 bytes)", LONG + b"\n"),
    ("very long line (20 kB)", VERY_LONG + b"\n"),
    ("pid after the long line", b"pid\n"),
    # helper mgmt42: 2.6's 1,024-byte line buffer (mgmt_line.py)
    ("line of 1023 bytes", b"foo" + b" a" * 510 + b"\n"),
    ("line of 1024 bytes, then pid", b"foo" + b" a" * 510 + b"b\npid\n"),
    ("line of 1025 bytes, then pid", b"z" * 1025 + b"\npid\n"),
    # what 2.6 keeps of a 1,042-byte client-deny is a command, which it runs (a difference kept: ours never runs it)
    ("tail of a long client-deny", b'client-deny 99 1 "' + b"a" * (1025 - 18) + b'signal SIGUSR2 #"\n'),
    ("NUL inside", b"pi\x00d\n"),
    ("NUL alone", b"\x00\n"),
    ("CR LF", b"pid\r\n"),
    ("CR alone then LF", b"pid\rversion\n"),
    ("two commands in one write", b"pid\nload-stats\n"),
    ("high bytes", b"pid \xff\xfe\n"),
    ("tab separated", b"kill\tnobody\n"),
    # helper host44: verdicts for a connected client without management-client-auth (2.6: SUCCESS
    # for its KID 0 and 1, nothing done to it -- its row still there after)
    ("client-deny 0 1 x", b"client-deny 0 1 x\n"),
    ("client-deny 0 0 with reasons", b'client-deny 0 0 "bad user" "go away"\n'),
    ("client-deny 0 2 x", b"client-deny 0 2 x\n"),
    ("client-auth-nt 0 1", b"client-auth-nt 0 1\n"),
    ("client-auth 0 0 + lines + END", b"client-auth 0 0\npush \"route 10.9.0.0 255.255.0.0\"\nEND\n"),
    ("status 2 after the verdicts", b"status 2\n"),
    # helper host44: flags and levels told back, numbers out of range, a command not in help
    ("hold on, hold, hold off", b"hold on\nhold\nhold off\n"),
    ("mute -1, mute 7, mute", b"mute -1\nmute 7\nmute\n"),
    ("verb 16, verb 99...9, verb", b"verb 16\nverb " + b"9" * 250 + b"\nverb\n"),
    ("nclients", b"nclients\n"),
]
SERVER_TAIL = ["bytecount 1", "bytecount 0", "client-kill 1 HALT", "status 2", "kill 198.18.0.2:40001", "pid"]

AUTH_STEPS = ["client-auth-nt 0 2", "client-auth 0 1\npush \"route 10.99.0.0 255.255.0.0\"\nEND"]
AUTH_LATER = ["client-auth 0 1\nEND", "client-auth-nt 0 1", "env-filter 3"]
AUTH_DENY = ["client-deny 1 1 \"bad user\" \"go away\"", "client-deny 1 1 \"again\" \"go away\"", "env-filter",
             "client-kill 0 HALT"]

CLIENT_STEPS = ["help", "version", "pid", "state", "state all", "status", "status 2", "status 9", "hold",
                "hold on", "hold off", "hold on", "log all", "echo all", "bytecount 0", "bytecount", "verb",
                "mute", "load-stats", "kill x", "client-kill 1", "client-auth 0 1\nEND", "client-auth-nt 0 1",
                "client-deny 0 1 x", "env-filter 1", "auth-retry", "auth-retry none", "test 2",
                "username Auth u", "password Auth p", "username", "needok x ok", "needstr x y",
                "remote ACCEPT", "remote", "proxy NONE", "proxy", "forget-passwords", "signal SIGHUP",
                "foo", "", "pi\x00d", "pid extra"]


# ------------------------------------------------------------------ one server run

def _server_cfg(lab: Lab, dev: str, extra: str) -> str:
    cfg = server_config(lab.pki) + "status-version 2\n" + extra
    return cfg.replace("dev tun\n", f"dev {dev}\n")


def _client_cfg(lab: Lab, dev: str, name: str, remote: str, lport: int | None, extra: str = "") -> str:
    prof = client_profile(lab.pki, client=name, remotes=[(remote, 1194, "udp")], extra=extra)
    if lport:
        prof = prof.replace("nobind\n", f"lport {lport}\n")
    return prof.replace("dev tun\n", f"dev {dev}\n")


def _start_server(lab: Lab, ours: bool, cfg: str, tag: str, env: dict | None = None) -> Proc:
    if ours:
        return lab.ours(lab.srv, cfg, f"mpsrv-{tag}-{len(lab.procs)}", pattern=r"listening on UDP", env=env)
    p = lab.start(lab.srv, [lab_openvpn(), "--config", str(lab.write(f"mpov-{tag}-{len(lab.procs)}.conf", cfg))],
                  f"mpov-{tag}")
    if not p.wait_for("Initialization Sequence Completed", Lab.START_WAIT):
        raise AssertionError(p.log()[-2000:])
    return p


def lab_openvpn() -> str:
    from .tools import OPENVPN
    return OPENVPN


def client_ns(lab: Lab):
    """The second client's namespace (198.18.6.2, the server at 198.18.6.1), made once."""
    ns = getattr(lab, "_mp_ns2", None)
    if ns is None:
        ns = lab._mp_ns2 = lab.add_client_ns(5)
    return ns


def server_transcript(lab: Lab, ours: bool, dev: str = "tun", steps: list[tuple[str, bytes]] | None = None,
                      tail: list[str] | None = None, clients: int = 2, quiet: float = 0.3) -> Transcript:
    """Debian's or our server with `management SOCK unix`, `clients` Debian clients connected
    (client1 from 198.18.0.2:40001, client2 from 198.18.6.2), then `steps` and `tail`."""
    tag = f"{'ours' if ours else 'theirs'}-{dev}"
    sock = str(lab.tmp / f"mp-{tag}-{len(lab.procs)}.sock")
    procs: list[Proc] = []
    out: Transcript = []
    try:
        srv = _start_server(lab, ours, _server_cfg(lab, dev, f"management {sock} unix\n"), tag)
        procs.append(srv)
        m = Wire(sock, srv)
        out.append(("<greeting>", m.read(0.3, 3, until_reply=False)))
        cli = [("client1", lab.cli, "198.18.0.1", 40001), ("client2", client_ns(lab), "198.18.6.1", None)][:clients]
        for name, ns, remote, lport in cli:
            procs.append(lab.openvpn(ns, _client_cfg(lab, dev, name, remote, lport), f"mpc-{name}-{tag}"))
        end = time.monotonic() + 20      # every client's row in the status before the first command
        while time.monotonic() < end and sum(x.startswith("CLIENT_LIST,") for x in m.exchange(b"status 2\n")) < clients:
            time.sleep(0.2)
        m.read(0.5, 2, until_reply=False)
        for label, raw in steps if steps is not None else SERVER_STEPS:
            out.append((label, m.exchange(raw, quiet)))
            if m.closed:                 # the rest of the steps on a new connection
                m.close()
                m = Wire(sock, srv)
                m.read(0.3, 2, until_reply=False)
        for c in tail if tail is not None else SERVER_TAIL:
            lines = m.exchange(c.encode() + b"\n", quiet=2.5 if c in ("bytecount 1", "client-kill 1 HALT") else 0.3)
            out.append((c, lines))
        m.close()
    finally:
        for p in reversed(procs):
            p.stop_promptly(8)
    return out


def auth_transcript(lab: Lab, ours: bool) -> Transcript:
    """management-client-auth: client1's login let in with a pushed route (the notifications up
    to its >CLIENT:ESTABLISHED block), a second verdict for it, then `env-filter 2` and client2's
    login, shown filtered, denied with a reason its client is told."""
    tag = f"{'ours' if ours else 'theirs'}-auth"
    sock = str(lab.tmp / f"mp-{tag}-{len(lab.procs)}.sock")
    procs: list[Proc] = []
    out: Transcript = []

    def env_names(lines: list[str]) -> list[str]:
        """The notifications with each ENV line's name only (its value is each run's own)."""
        return [x.split("=", 1)[0] if x.startswith(">CLIENT:ENV,") else x for x in lines]
    try:
        srv = _start_server(lab, ours, _server_cfg(lab, "tun", f"management {sock} unix\nmanagement-client-auth\n"),
                            tag)
        procs.append(srv)
        m = Wire(sock, srv)
        m.read(0.3, 3, until_reply=False)
        creds = lab.write("mp-creds.txt", "alice\nsecret\n")
        c1 = lab.openvpn(lab.cli, _client_cfg(lab, "tun", "client1", "198.18.0.1", 40001, f"auth-user-pass {creds}\n"),
                         f"mpa-c1-{tag}", wait=0)
        procs.append(c1)
        out.append(("<client1 login>", env_names(_until(m, ">CLIENT:ENV,END"))))
        out.append((AUTH_STEPS[0], m.exchange(AUTH_STEPS[0].encode() + b"\n")))
        lines = m.exchange(AUTH_STEPS[1].encode() + b"\n")
        if not any(x.startswith(">CLIENT:ESTABLISHED,") for x in lines) or lines[-1] != ">CLIENT:ENV,END":
            lines += _until(m, ">CLIENT:ENV,END")
        out.append((AUTH_STEPS[1], env_names(lines)))
        up = c1.wait_for("Initialization Sequence Completed", 20)
        out.append(("<client1 up, its pushed route>", [str(up), str("10.99.0.0" in lab.cli.run("ip -4 route show").stdout)]))
        for c in AUTH_LATER:
            out.append((c, m.exchange(c.encode() + b"\n")))
        c2 = lab.openvpn(client_ns(lab), _client_cfg(lab, "tun", "client2", "198.18.6.1", None,
                                                     f"auth-user-pass {creds}\n"), f"mpa-c2-{tag}", wait=0)
        procs.append(c2)
        out.append(("<client2 login, env-filter 3>", env_names(_until(m, ">CLIENT:ENV,END"))))
        for c in AUTH_DENY:
            out.append((c, m.exchange(c.encode() + b"\n", quiet=0.5)))
        told = c2.wait_for(r"AUTH_FAILED\S*", 15)
        said = re.findall(r"AUTH_FAILED\S*", c2.log())
        out.append(("<client2 told>", sorted(set(said)) if told else ["nothing"]))
        m.close()
    finally:
        for p in reversed(procs):
            p.stop_promptly(8)
    return out


def _until(m: Wire, last: str, within: float = 20) -> list[str]:
    got: list[str] = []
    end = time.monotonic() + within
    while time.monotonic() < end and last not in got:
        got += m.read(0.1, 0.5, until_reply=False)
    return got


def client_transcript(lab: Lab, ours: bool, server: Proc | None = None) -> Transcript:
    """A client with `management SOCK unix`, `management-hold` against a Debian server: the steps
    on hold, then after `hold release` with the tunnel up."""
    tag = "ours-cli" if ours else "theirs-cli"
    sock = str(lab.tmp / f"mp-{tag}-{len(lab.procs)}.sock")
    procs: list[Proc] = []
    out: Transcript = []
    try:
        prof = client_profile(lab.pki, extra=f"management {sock} unix\nmanagement-hold\n")
        p = (lab.ours if ours else lab.openvpn)(lab.cli, prof, f"mpcli-{tag}", wait=0)
        procs.append(p)
        m = Wire(sock, p)
        out.append(("<greeting>", m.read(0.5, 3, until_reply=False)))
        for c in CLIENT_STEPS:
            out.append(("hold: " + c, m.exchange(c.encode() + b"\n")))
        out.append(("hold release", m.exchange(b"hold release\n")))
        end = time.monotonic() + 30
        seen: list[str] = []
        while time.monotonic() < end and not any(",CONNECTED," in x for x in seen):
            seen += m.read(0.1, 0.5, until_reply=False)
        out.append(("<up>", [x for x in seen if x.startswith(">STATE:")][-1:]))
        for c in CLIENT_STEPS:
            out.append(("up: " + c, m.exchange(c.encode() + b"\n")))
        m.close()
    finally:
        for p in reversed(procs):
            p.stop_promptly(8)
    return out


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return int(next(x for x in f if x.startswith("VmRSS:")).split()[1])


def _server_pid(p: Proc) -> int:
    """The server's own pid (our program runs under `unshare ... sh -c` wrappers at times)."""
    import subprocess
    kids = subprocess.run(["pgrep", "-P", str(p.p.pid)], capture_output=True, text=True).stdout.split()
    return int(kids[-1]) if kids and not p.is_openvpn else p.p.pid


def hostile(lab: Lab, ours: bool) -> list[str]:
    """Management clients that misbehave, beside a tunnel: one that never reads what it asked
    for (`log on all` and 5,000 `status 3`), one that floods 100,000 `pid` lines and reads
    everything, one that hangs up in the middle of 500 replies. Figures: the tunnel's pings
    meanwhile, the server's RSS before and after, what each client got, whether a fresh
    connection is answered after each."""
    tag = f"{'ours' if ours else 'theirs'}-hostile"
    sock = str(lab.tmp / f"mp-{tag}-{len(lab.procs)}.sock")
    procs: list[Proc] = []
    out: list[str] = []
    try:
        srv = _start_server(lab, ours, _server_cfg(lab, "tun", f"management {sock} unix\n"), tag)
        procs.append(srv)
        procs.append(lab.openvpn(lab.cli, _client_cfg(lab, "tun", "client1", "198.18.0.1", 40001), f"mph-c1-{tag}"))
        pid = srv.p.pid if not ours else _server_pid(srv)
        rss0 = _rss_kb(pid)
        # 1. never reads
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        s.setblocking(False)
        sent = 0
        burst = b"log on all\n" + b"status 3\n" * 5000
        end = time.monotonic() + 10
        while sent < len(burst) and time.monotonic() < end:
            try:
                sent += s.send(burst[sent:])
            except BlockingIOError:
                time.sleep(0.05)
        pings = lab.ping(lab.cli, "198.19.0.1", 20, 0.1)
        time.sleep(1)
        alive = True
        try:
            s.send(b"pid\n")
            s.setblocking(True)
            s.settimeout(1)
            got = s.recv(1)
            alive = bool(got)
        except (OSError, socket.timeout):
            alive = False
        s.close()
        rss1 = _rss_kb(pid)
        w = Wire(sock, srv)
        w.read(0.2, 2, until_reply=False)
        fresh = w.exchange(b"pid\n")
        w.close()
        out.append(f"never reads: {sent} of {len(burst)} bytes taken, pings 20/{pings} meanwhile, "
                   f"connection {'still open' if alive else 'closed'}, RSS {rss0} -> {rss1} kB, "
                   f"a fresh connection then: {[mask(x) for x in fresh][:1]}")
        # 2. flood, reading
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        s.settimeout(20)            # the sender's wait for room (the reader's too: the 60 s deadline bounds it)
        t0 = time.monotonic()
        import threading
        got_lines = 0
        buf = b""

        def reader() -> None:
            nonlocal got_lines, buf
            end = time.monotonic() + 60
            while time.monotonic() < end and got_lines < 100_000:
                try:
                    d = s.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not d:
                    return
                buf += d
                got_lines += d.count(b"SUCCESS: pid=")
        th = threading.Thread(target=reader)
        th.start()
        try:
            s.sendall(b"pid\n" * 100_000)
        except OSError as e:
            out.append(f"flood: sending stopped: {e}")
        pings = lab.ping(lab.cli, "198.19.0.1", 20, 0.1)
        th.join(65)
        took = time.monotonic() - t0
        s.close()
        out.append(f"flood: 100000 `pid` lines sent, {got_lines} answered in {took:.1f} s, pings 20/{pings} meanwhile, "
                   f"RSS {_rss_kb(pid)} kB")
        # 3. hang up mid-reply
        for _ in range(20):
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock)
            s.sendall(b"status 3\n" * 500)
            s.recv(100)
            s.close()
        w = Wire(sock, srv)
        w.read(0.2, 2, until_reply=False)
        fresh = w.exchange(b"load-stats\n")
        w.close()
        out.append(f"20 connections hung up mid-reply (500 `status 3` each): then {[mask(x) for x in fresh]}, "
                   f"server {'running' if srv.alive() else 'GONE'}, RSS {_rss_kb(pid)} kB")
    finally:
        for p in reversed(procs):
            p.stop_promptly(8)
    return [f"[hostile, {'ours' if ours else 'OpenVPN'}] {x}" for x in out]


LOOPWATCH_DIR = Path(__file__).parent / "reliability" / "loopwatch"


def _loop_max_ms(path: Path, since: float) -> float | None:
    """The longest loop step (ms of work) loopwatch recorded after `since` (None: no record)."""
    import json
    if not path.exists():
        return None
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    rows = [r for r in rows if r["t"] >= since]
    return max((r["max_ms"] for r in rows), default=None)


def hostile_lines(lab: Lab, ours: bool) -> list[str]:
    """helper mgmt42's attacks beside a pinged tunnel: one connection sending 1 MiB lines for
    8 s without reading, one sending 20 of them and reading the answers, a flood of 20,000
    `client-deny` and `kill` lines (IPv6 ones among them), and 1 MB of random bytes (NULs,
    invalid UTF-8) in lines. Figures: replies, pings meanwhile, RSS before and after, a fresh
    connection answered after each; for ours the longest loop step (lab/reliability/loopwatch,
    windows of 1 s)."""
    import random
    import threading
    tag = f"{'ours' if ours else 'theirs'}-hostile2"
    sock = str(lab.tmp / f"mp-{tag}-{len(lab.procs)}.sock")
    watch = lab.tmp / f"loopwatch-{tag}.jsonl"
    env = {"PYTHONPATH": str(LOOPWATCH_DIR), "LOOPWATCH": str(watch), "LOOPWATCH_EVERY": "1"} if ours else None
    procs: list[Proc] = []
    out: list[str] = []

    def send_reading(data: bytes, until: bytes, within: float = 60) -> bytes:
        """`data` to a fresh connection while a thread reads what comes back, until `until` came
        (2.6 stops reading a client whose replies wait unread: a send alone would stall)."""
        c = socket.socket(socket.AF_UNIX)
        c.connect(sock)
        c.settimeout(within)
        got = bytearray()
        end = time.monotonic() + within

        def reader() -> None:
            while time.monotonic() < end and until not in got:
                try:
                    d = c.recv(65536)
                except (socket.timeout, OSError):
                    return
                if not d:
                    return
                got.extend(d)
        rt = threading.Thread(target=reader)
        rt.start()
        try:
            c.sendall(data)
        except OSError:
            pass
        rt.join(within + 5)
        c.close()
        return bytes(got)

    def fresh(srv: Proc) -> str:
        w = Wire(sock, srv)
        w.read(0.2, 2, until_reply=False)
        got = w.exchange(b"pid\n")
        w.close()
        return str([mask(x) for x in got][:1])

    def loop(since: float) -> str:
        if not ours:
            return ""
        time.sleep(1.2)                      # the window's line
        ms = _loop_max_ms(watch, since)
        return f", longest loop step {ms} ms" if ms is not None else ", no loop figures"

    try:
        srv = _start_server(lab, ours, _server_cfg(lab, "tun", f"management {sock} unix\n"), tag, env)
        procs.append(srv)
        procs.append(lab.openvpn(lab.cli, _client_cfg(lab, "tun", "client1", "198.18.0.1", 40001), f"mph2-c1-{tag}"))
        pid = srv.p.pid if not ours else _server_pid(srv)
        # 1. 1 MiB lines for 8 s, never reading
        rss0, t0 = _rss_kb(pid), time.time()
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        s.setblocking(False)
        mib = b"x" * (1 << 20) + b"\n"
        sent, pings = 0, [0]
        th = threading.Thread(target=lambda: pings.__setitem__(0, lab.ping(lab.cli, "198.19.0.1", 20, 0.2)))
        th.start()
        end = time.monotonic() + 8
        while time.monotonic() < end:
            try:
                sent += s.send(mib)
            except BlockingIOError:
                time.sleep(0.01)
            except OSError:
                break
        th.join(30)
        s.close()
        out.append(f"1 MiB lines for 8 s, never reading: {sent / 2**20:.0f} MiB taken, pings 20/{pings[0]}, "
                   f"RSS {rss0} -> {_rss_kb(pid)} kB, then {fresh(srv)}{loop(t0)}")
        # 2. 20 lines of 1 MiB, reading
        t0 = time.time()
        got = send_reading(mib * 20 + b"pid\n", b"SUCCESS: pid=").decode("utf-8", "replace").split("\r\n")
        got = [x for x in got if x and not x.startswith(">INFO:")]
        out.append(f"20 lines of 1 MiB then pid, reading: {len(got)} lines back "
                   f"({sorted(set(mask(x) for x in got))}), RSS {_rss_kb(pid)} kB{loop(t0)}")
        # 3. a flood of client-deny and kill
        t0 = time.time()
        flood = (b"client-deny 0 1 x\nkill 1.2.3.4:5\nkill nobody\nkill 2001:db8::1:5\n") * 5000 + b"pid\n"
        pinged = [0]
        th = threading.Thread(target=lambda: pinged.__setitem__(0, lab.ping(lab.cli, "198.19.0.1", 20, 0.1)))
        th.start()
        buf = send_reading(flood, b"SUCCESS: pid=")
        th.join(30)
        took = time.time() - t0
        kinds = sorted(set(mask(x) for x in buf.decode("utf-8", "replace").split("\r\n") if x and not x.startswith(">")))
        out.append(f"20,000 client-deny/kill lines: {buf.count(b'ERROR:')} errors back in {took:.1f} s, "
                   f"pings 20/{pinged[0]}, RSS {_rss_kb(pid)} kB, kinds {kinds[:6]}{loop(t0)}")
        # 4. random bytes
        t0 = time.time()
        rnd = random.Random(42)
        junk = bytes(rnd.randrange(256) for _ in range(1 << 20))
        got = send_reading(junk + b"\npid\n", b"SUCCESS: pid=").decode("utf-8", "replace").split("\r\n")
        got = [x for x in got if x and not x.startswith(">INFO:")]
        out.append(f"1 MB of random bytes then pid: {len(got)} lines back, last {[mask(x) for x in got[-1:]]}, "
                   f"server {'running' if srv.alive() else 'GONE'}, RSS {_rss_kb(pid)} kB, then {fresh(srv)}{loop(t0)}")
    finally:
        for p in reversed(procs):
            p.stop_promptly(8)
    return [f"[hostile2, {'ours' if ours else 'OpenVPN'}] {x}" for x in out]


def run_all(lab: Lab, only: str | None = None, raw: Path | None = None) -> list[str]:
    """Every comparison (or `only` one); both transcripts, unmasked, appended to `raw`."""
    problems: list[str] = []
    raw = raw or lab.tmp / "transcripts.txt"

    def keep(what: str, t: Transcript, o: Transcript) -> list[str]:
        with raw.open("a") as f:
            for (label, a), (_, b) in zip(t, o):
                f.write(f"=== {what} {label!r}\n  OpenVPN: {a}\n  ours:    {b}\n")
        return [f"[{what}] {d}" for d in diff(t, o)]
    for dev in ("tun", "tap"):
        if only in (None, dev):
            t = server_transcript(lab, False, dev)
            o = server_transcript(lab, True, dev)
            problems += keep(f"server {dev}", t, o)
    if only in (None, "auth"):
        problems += keep("client-auth", auth_transcript(lab, False), auth_transcript(lab, True))
    if only in (None, "hostile"):
        for ours in (False, True):
            print("\n".join(hostile(lab, ours)), flush=True)
    if only in (None, "hostile", "hostile2"):
        for ours in (False, True):
            print("\n".join(hostile_lines(lab, ours)), flush=True)
    if only in (None, "client"):
        srv = _start_server(lab, False, server_config(lab.pki), "forcli")
        try:
            problems += keep("client", client_transcript(lab, False), client_transcript(lab, True))
        finally:
            srv.stop_promptly(8)
    return problems


def main(argv: list[str]) -> int:
    only = argv[argv.index("--only") + 1] if "--only" in argv else None
    raw = Path(argv[argv.index("--out") + 1] if "--out" in argv else "/tmp/mgmt-parity-transcripts.txt")
    raw.unlink(missing_ok=True)
    with Lab(clients=["client1", "client2"]) as lab:
        problems = run_all(lab, only, raw)
    print("\n".join(problems) if problems else "no differences")
    print(f"{len(problems)} difference(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
