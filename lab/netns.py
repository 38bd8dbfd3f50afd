"""Network namespaces, processes in them (Debian's OpenVPN, our program), the two-namespace Lab and
its traffic checks.

Topology (all addresses from 198.18.0.0/15):
    [cli ns] veth 198.18.0.2/24 <----> 198.18.0.1/24 veth [srv ns]   tunnel pool 198.19.0.0/24
    the server namespace also holds 198.18.100.1/24 on a dummy device ("a host behind the server"),
    pushed to clients as a route.
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from .pki import make_pki
from .tools import OPENVPN, OUR_BIN, require_root_and_tools

SRV_IP, CLI_IP = "198.18.0.1", "198.18.0.2"
TUN_SERVER_IP = "198.19.0.1"
BEHIND_IP = "198.18.100.1"


# ---------------------------------------------------------------- leftovers: none, however a run ends
# Lab.close() and Netns.delete() are right when they run; they do not run when the process is
# killed (a CI job timeout, a harness: SIGTERM) or a fixture's teardown is skipped, and the
# namespaces then stay in /run/netns with nothing in them. Three layers:
# 1. SIGTERM becomes KeyboardInterrupt (interrupt_on_sigterm): `with Lab()`, `finally` and pytest's
#    fixture teardowns run as for Ctrl-C (tests/conftest.py installs it; Netns does if nobody has);
# 2. every namespace this process made and has not deleted is deleted at exit (atexit), and in a
#    pytest process at its session's end already (delete_own: xdist cuts a worker's exit short);
# 3. each namespace is recorded on disk with its creator (pid and start time) before it exists, so
#    one left by a process that could run nothing (SIGKILL) is removed by the next run
#    (remove_leftovers(), at pytest's session start) -- only when its creator is gone, so the
#    namespaces of runs going on beside this one are never touched.
#    A record appears whole (_record: written under a temporary name, then linked to its own): one
#    opened and then written was empty for a moment, and another process's remove_leftovers()
#    reading it then saw no live creator and deleted the namespace being made, killing what ran
#    in it (an xdist worker's session start beside the other worker's tests; a namespace vanished
#    mid-test in CI). A record that names no creator is one being written by an older checkout's
#    code (other worktrees on the machine run it): kept until it is a minute old.
OWNERS = Path("/run/vpn-appliance-lab")
_mine: dict[str, Netns] = {}


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot): with the pid, names one process (pids recycle)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _me() -> str:
    return f"{os.getpid()} {_start_time(os.getpid())}"


def _owner_alive(stamp: str) -> bool:
    pid, _, start = stamp.partition(" ")
    return pid.isdigit() and _start_time(int(pid)) == start


def interrupt_on_sigterm(first: Callable[[], None] | None = None) -> None:
    """SIGTERM raises KeyboardInterrupt in the main thread, so cleanup code runs as for Ctrl-C
    (`first` runs before: pytest's xdist controller passes the signal on to its workers).
    Once: further SIGTERMs are ignored, or a harness repeating it would cut the cleanup short
    (it is bounded: processes get 5 s, then SIGKILL). Only from the main thread (Python's rule)."""
    import threading
    if threading.current_thread() is not threading.main_thread():
        return

    def on_term(signum, frame) -> None:  # noqa: ANN001 - signal handler signature
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if first is not None:
            first()
        raise KeyboardInterrupt("SIGTERM")
    signal.signal(signal.SIGTERM, on_term)


def _delete_ns(name: str) -> None:
    """Kill whatever still runs inside (by PID), then remove the namespace and its record."""
    r = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True)
    for pid in r.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    with contextlib.suppress(OSError):
        (OWNERS / name).unlink()


_UNNAMED_GRACE = 60.0              # s: how long a record naming no creator may still be being written


def _writing() -> Path:
    """Where _record writes a record before linking it in: a directory, which remove_leftovers
    (an older checkout's too) passes over, so nobody reads a record there half-written."""
    return OWNERS / ".writing"


def _record(name: str) -> None:
    """Record this process as `name`'s creator, whole at once: written under a temporary name,
    then linked to its own name, which fails with FileExistsError as open(..., "x") did when the
    name is taken. Another process's remove_leftovers() never reads it empty."""
    _writing().mkdir(mode=0o755, exist_ok=True)
    tmp = _writing() / f"{name}.{os.getpid()}"
    tmp.write_text(_me())
    try:
        os.link(tmp, OWNERS / name)
    finally:
        tmp.unlink()


def _remove_dead_writers() -> None:
    """The temporary records of writers killed mid-way (named by their pid; a recycled pid keeps
    one, which harms nothing)."""
    with contextlib.suppress(OSError):
        for tmp in _writing().iterdir():
            pid = tmp.name.rpartition(".")[2]
            if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
                with contextlib.suppress(OSError):
                    tmp.unlink()


def remove_leftovers(at_exit: bool = False) -> list[str]:
    """Delete the recorded namespaces whose creator is gone (and, `at_exit`, this process's own);
    returns their names. Namespaces without a record (made by other code) are never touched."""
    removed = []
    me = _me()
    try:
        records = list(OWNERS.iterdir())
    except OSError:
        return removed
    _remove_dead_writers()
    for rec in records:
        if rec.is_dir():                            # _writing()
            continue
        try:
            owner = rec.read_text().strip()
            age = time.time() - rec.stat().st_mtime
        except OSError:
            continue
        if not owner and age < _UNNAMED_GRACE:      # an older checkout's record, not yet written
            continue
        if owner == me and not at_exit or owner != me and _owner_alive(owner):
            continue
        _delete_ns(rec.name)
        _mine.pop(rec.name, None)
        removed.append(rec.name)
    return removed


def delete_own() -> list[str]:
    """Delete now the namespaces this process made and still holds (what it does at exit anyway):
    a pytest process calls it at its session's end (tests/conftest.py), so an xdist worker's are
    gone before its controller ends it -- xdist's end cuts a worker's exit short (SIGKILL 10 s
    after it asks it to stop, os._exit after 15), and the exit's own deletion was lost with it."""
    names = list(_mine)
    for name in names:
        _delete_ns(name)
        _mine.pop(name, None)
    return names


def held_by(pids: list[int] | set[int]) -> list[str]:
    """The recorded namespaces whose creator is one of `pids`, still running."""
    out = []
    try:
        records = list(OWNERS.iterdir())
    except OSError:
        return out
    for rec in records:
        try:
            owner = rec.read_text().strip() if not rec.is_dir() else ""
        except OSError:
            continue
        pid = owner.partition(" ")[0]
        if pid.isdigit() and int(pid) in pids and _owner_alive(owner):
            out.append(rec.name)
    return out


@atexit.register
def _at_exit() -> None:
    if _mine:                                       # a forked child's copy deletes nothing: records name the parent
        remove_leftovers(at_exit=True)


# ---------------------------------------------------------------- namespaces and processes
class Netns:
    def __init__(self, name: str) -> None:
        self.name = name
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            interrupt_on_sigterm()                  # a lab script's `with Lab()` cleans up on SIGTERM too
        OWNERS.mkdir(mode=0o755, exist_ok=True)
        _record(name)                               # before it exists: no window where it is unrecorded
        _mine[name] = self
        try:
            subprocess.run(["ip", "netns", "add", name], check=True)
        except BaseException:
            _mine.pop(name, None)
            with contextlib.suppress(OSError):
                (OWNERS / name).unlink()
            raise
        self.run("ip link set lo up")

    def run(self, cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.name, "sh", "-c", cmd], check=check,
                              capture_output=True, text=True, timeout=timeout)

    def delete(self) -> None:
        _delete_ns(self.name)
        _mine.pop(self.name, None)


class Proc:
    """A process in a namespace with its log in a file; stop() is SIGTERM, then SIGKILL."""

    def __init__(self, ns: Netns, argv: list[str], log: Path, env: dict | None = None) -> None:
        self.log_path = log
        self.f = open(log, "ab")
        self.p = subprocess.Popen(["ip", "netns", "exec", ns.name, *argv], stdout=self.f, stderr=subprocess.STDOUT,
                                  start_new_session=True, env={**os.environ, **(env or {})})

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_for(self, pattern: str, timeout: float, after: int = 0) -> bool:
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if rx.search(self.log()[after:]):
                return True
            if self.p.poll() is not None:
                return bool(rx.search(self.log()[after:]))
            time.sleep(0.1)
        return False

    def wait_count(self, text: str, n: int, timeout: float) -> bool:
        """Wait until `text` stands at least `n` times in the log (e.g. the n-th reconnection)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.log().count(text) >= n:
                return True
            time.sleep(0.2)
        return False

    def alive(self) -> bool:
        return self.p.poll() is None

    def exit_within(self, seconds: float) -> int | None:
        """The exit status once the process ended by itself within `seconds`, else None (still running)."""
        try:
            return self.p.wait(seconds)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 5.0) -> int | None:
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(5)
        self.f.close()
        return self.p.returncode

    def is_openvpn(self) -> bool:
        """Whether this is Debian's OpenVPN (not our program, not a tool)."""
        return OPENVPN in self.p.args or "openvpn" in self.p.args

    def is_ours(self) -> bool:
        """Whether this is our program (directly or through readable_python_argv's wrapper)."""
        return any(OUR_BIN in str(a) for a in self.p.args)

    # How often stop_promptly repeats its SIGTERM, or looks for our server's wait.
    PROMPT_STOP_EVERY = 0.2
    # What our server logs when a SIGTERM has it wait for its clients' RESTART acknowledgements.
    OUR_RESTART_WAIT = re.compile(r"stopping: told \d+ clients? to restart.*waiting up to")

    def stop_promptly(self, timeout: float = 5.0) -> int | None:
        """stop() for a process the test is done with, without the exit delay of a UDP server
        with explicit-exit-notify: Debian's OpenVPN server takes a SIGTERM to tell its clients
        RESTART and exits 2 s later (multi.c multi_push_restart_schedule_exit), a client with it
        sends its exit notification for its n seconds (sig.c process_sigterm), and ours waits up
        to 2 s for the RESTART's acknowledgements (gateway/server.py request_stop) -- the whole
        2 s when the client has gone already, as in a teardown that stops the clients first. A
        second SIGTERM then ends each at once through the same clean exit (OpenVPN's:
        "SIGTERM[hard,] received, process exiting", status 0; ours: its stop proper). So:
        OpenVPN gets SIGTERM again every PROMPT_STOP_EVERY s until it is gone (one that comes
        before the first was taken merges with it: never slower than stop()); ours a second
        one only once it logged that wait (a signal in the middle of its own stop is not
        something to test here). SIGKILL after `timeout`. That delay was 2 s of every test's
        teardown in the files that start such a server per test. For teardowns only: the
        notifications' retransmissions, and a peer told to reconnect, are cut short. Other
        processes get stop()."""
        openvpn, ours = self.is_openvpn(), self.is_ours()
        if self.p.poll() is not None or not (openvpn or ours):
            return self.stop(timeout)
        seen = len(self.log())
        end = time.monotonic() + timeout
        signals = 0
        while self.p.poll() is None and time.monotonic() < end:
            if openvpn or signals == 0 or (signals == 1 and self.OUR_RESTART_WAIT.search(self.log()[seen:])):
                try:
                    os.killpg(self.p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    break
                signals += 1
            try:
                self.p.wait(self.PROMPT_STOP_EVERY)
            except subprocess.TimeoutExpired:
                pass
        return self.stop(0.5)


def wait_oper_up(ns: str, dev: str, within: float = 30.0) -> None:
    """Wait until `dev` in namespace `ns` is operationally up. A veth's carrier comes at once, but
    the kernel's link watcher, which swaps the device's drop-everything qdisc for a real one and
    tells IPv6 the link is ready, runs later: a datagram, ARP or neighbour solicitation sent before
    is dropped without a word. Under load (the CI's TCG guests beside the suite) that took over 3 s
    once, and a single-datagram test timed out."""
    end = time.monotonic() + within
    while True:
        r = subprocess.run(["ip", "-n", ns, "-j", "link", "show", "dev", dev], capture_output=True, text=True,
                           timeout=10)
        if r.returncode == 0 and json.loads(r.stdout or "[]")[0].get("operstate") == "UP":
            return
        if time.monotonic() > end:
            raise AssertionError(f"{dev} in {ns} not up within {within:.0f} s: {r.stdout or r.stderr}")
        time.sleep(0.05)


def wait_local_addresses(ns: str, addrs: list[str] | tuple[str, ...], within: float = 30.0) -> None:
    """Wait until the kernel in namespace `ns` takes datagrams for each of `addrs`: its local route
    is in the local table. `ip addr add` of an IPv6 address returns with the address listed and
    bind() to it working, but the kernel adds its local route later, from its address work
    queue -- with `nodad` and on lo too -- and until then a datagram to it is dropped without a
    word. On a quiet machine the route was missing right after the add in 177 of 300 tries;
    under CI's load a test sending at once lost every datagram to the last address added (and
    IPv4's, added at once, are checked the same way for one rule everywhere)."""
    want = {a.split("%")[0] for a in addrs}
    end = time.monotonic() + within
    while True:
        have: set[str] = set()
        for fam in ("-4", "-6"):
            r = subprocess.run(["ip", "-n", ns, fam, "-j", "route", "show", "table", "local"], capture_output=True,
                               text=True, timeout=10)
            have |= {x["dst"] for x in json.loads(r.stdout or "[]") if x.get("type") == "local"}
        if want <= have:
            return
        if time.monotonic() > end:
            raise AssertionError(f"no local route in {ns} within {within:.0f} s for {sorted(want - have)}")
        time.sleep(0.05)


def wait_for_text(path: Path, text: str, timeout: float) -> bool:
    """Whether `text` appears in the file at `path` within `timeout` s (a log a process writes itself,
    with `log FILE`, instead of to the stdout Proc watches)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and text in path.read_text(errors="replace"):
            return True
        time.sleep(0.2)
    return False


def readable_python_argv(argv: list[str]) -> list[str]:
    """argv to run our program as on a host where its Python is world-readable (Debian's python3
    in /usr), for configs with `user nobody`: the drop refuses a library the user cannot read
    (modules load lazily). Where the interpreter, the venv or this checkout live under /root
    (0700; on the build machine pyenv's Python does, and a CI clone may): the program runs in a
    private mount namespace where /root is a 0755 tmpfs holding just those trees (each bound back
    in at its own path). Nothing outside that namespace changes."""
    here = Path(__file__).resolve().parents[1]
    tops = sorted({str(Path("/root") / p.relative_to("/root").parts[0])
                   for p in (Path(sys.base_prefix), Path(sys.prefix), here, Path(argv[0]).resolve())
                   if p.is_relative_to("/root") and p != Path("/root")})
    if not tops:
        return argv
    steps = ["set -e", "d=$(mktemp -d)"]
    for i, t in enumerate(tops):
        steps += [f"mkdir $d/{i}", f"mount --bind {shlex.quote(t)} $d/{i}"]
    steps.append("mount -t tmpfs -o mode=0755 tmpfs /root")
    for i, t in enumerate(tops):
        steps += [f"mkdir -p {shlex.quote(t)}", f"mount --bind $d/{i} {shlex.quote(t)}", f"umount $d/{i}",
                  f"rmdir $d/{i}"]
    steps += ["rmdir $d", 'exec "$@"']
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", "; ".join(steps), "sh", *argv]


# ---------------------------------------------------------------- the lab
class Lab:
    """Two namespaces joined by a veth, a PKI, and helpers to start peers and check traffic."""

    def __init__(self, clients: list[str] | None = None, tmp: Path | None = None) -> None:
        require_root_and_tools()
        self.tag = secrets.token_hex(3)
        self.tmp = Path(tmp or tempfile.mkdtemp(prefix="vpnlab-"))
        self.procs: list[Proc] = []
        self.ours_procs: list[Proc] = []       # checked at close: logging_errors()
        self.ns: list[Netns] = []
        try:                                        # a half-built lab is removed too (no `with` ran yet)
            self.srv = self._ns("s")
            self.cli = self._ns("c")
            a, b = f"va{self.tag}", f"vb{self.tag}"
            subprocess.run(["ip", "link", "add", a, "netns", self.srv.name, "type", "veth", "peer", "name", b,
                            "netns", self.cli.name], check=True)
            self.srv.run(f"ip addr add {SRV_IP}/24 dev {a} && ip link set {a} up")
            self.cli.run(f"ip addr add {CLI_IP}/24 dev {b} && ip link set {b} up")
            self.srv.run(f"ip addr add {BEHIND_IP}/32 dev lo")  # no dummy module on every kernel
            self.pki = make_pki(self.tmp / "pki", clients or ["client1"])
        except BaseException:
            self.close()
            raise

    def _ns(self, role: str) -> Netns:
        ns = Netns(f"lab{role}{self.tag}")
        self.ns.append(ns)
        return ns

    def add_client_ns(self, index: int) -> Netns:
        """Another client namespace on its own veth to the server (198.18.1.<index>)."""
        ns = self._ns(f"c{index}")
        a, b = f"vs{index}{self.tag}", f"vc{index}{self.tag}"
        subprocess.run(["ip", "link", "add", a, "netns", self.srv.name, "type", "veth", "peer", "name", b, "netns",
                        ns.name], check=True)
        self.srv.run(f"ip addr add 198.18.{index + 1}.1/24 dev {a} && ip link set {a} up")
        ns.run(f"ip addr add 198.18.{index + 1}.2/24 dev {b} && ip link set {b} up "
               f"&& ip route add 198.18.0.0/24 via 198.18.{index + 1}.1")
        return ns

    def add_proxy_ns(self) -> Netns:
        """A proxy's namespace between the client and the server (the proxy tests'): 198.18.9.1 on
        the client's side (the client 198.18.9.2), 198.18.8.2 on the server's (the server
        198.18.8.1, an address the client has no route to: only a connection through the proxy
        reaches it)."""
        proxy = self.add_client_ns(7)
        a, b = f"px{self.tag}c", f"px{self.tag}p"
        subprocess.run(["ip", "link", "add", a, "netns", self.cli.name, "type", "veth", "peer", "name", b,
                        "netns", proxy.name], check=True)
        self.cli.run(f"ip addr add 198.18.9.2/24 dev {a} && ip link set {a} up")
        proxy.run(f"ip addr add 198.18.9.1/24 dev {b} && ip link set {b} up")
        assert self.cli.run("ip route get 198.18.8.1", check=False).returncode != 0, \
            "the client must not reach the server's proxy-side address except through the proxy"
        return proxy

    def segment_on_the_wire(self, on: bool = True) -> None:
        """Make the server-client veth carry one datagram (or TCP segment) per skb, both ways.

        Our UDP sends are GSO batches (transport/udp.py: a run of up to 64 data packets in one
        sendmsg; control packets always leave alone). A veth takes such a batch whole, so it reaches
        the other namespace as ONE skb, segmented only at the receiving socket. A netfilter rule
        (nft `@th`, `numgen`, `limit`), a tc filter or a packet socket sees that skb once and
        judges all its datagrams by the first one's bytes: a rule that drops 1 packet in 10, or
        counts data packets, meets the batch once. (Rules about control packets need none of
        this: each is an skb of its own.) With `gso_max_segs 1` the
        kernel segments before the veth (after the sender's own output hook, which still sees the
        batch: filter in the receiving namespace), so each datagram crosses and is judged alone.
        Our sends still take the GSO path in the socket; the wire's bytes are the same. Checked
        here (`ip -d link`): a kernel that ignored it would make such a test pass by luck."""
        segs = 1 if on else 65535
        for ns, dev in ((self.srv, f"va{self.tag}"), (self.cli, f"vb{self.tag}")):
            ns.run(f"ip link set dev {dev} gso_max_segs {segs}")
            shown = ns.run(f"ip -d link show dev {dev}").stdout
            assert f"gso_max_segs {segs} " in shown, f"gso_max_segs {segs} not taken on {dev}: {shown}"

    def write(self, name: str, text: str) -> Path:
        p = self.tmp / name
        p.write_text(text)
        return p

    def one_time_password_script(self, name: str, user: str, password: str) -> tuple[Path, Path, Path]:
        """An auth-user-pass-verify script (via-file) that accepts `user`/`password` once, like a
        one-time password, and refuses everything after; each call's username is appended to the
        `calls` file, and the `used` marker exists once it accepted. Returns (script, calls, used)."""
        calls, used = self.tmp / f"{name}-calls.log", self.tmp / f"{name}-used"
        script = self.write(f"{name}.sh", "#!/bin/sh\n"          # via-file: $1 holds username, password
                            'u=$(sed -n 1p "$1"); p=$(sed -n 2p "$1")\n'
                            f'echo "$u" >> {calls}\n'
                            f'if [ "$u" = {user} ] && [ "$p" = {password} ] && [ ! -e {used} ]; then\n'
                            f"  touch {used}; exit 0\nfi\nexit 1\n")
        script.chmod(0o755)
        return script, calls, used

    def start(self, ns: Netns, argv: list[str], name: str, env: dict | None = None) -> Proc:
        p = Proc(ns, argv, self.tmp / f"{name}-{len(self.procs)}.log", env)   # a fresh log per process
        self.procs.append(p)
        if any(OUR_BIN in str(a) for a in argv):
            self.ours_procs.append(p)
        return p

    # Waits for a process's first sign of life: long, since success returns at once. Under the
    # fresh-clone CI the VM kernel compiles beside these tests on 2 cores, and one of our servers
    # once printed nothing at all within 20 s there.
    START_WAIT = 60.0

    def _not_up(self, p: Proc, what: str) -> AssertionError:
        state = "still running" if p.alive() else f"exited with {p.p.returncode}"
        return AssertionError(f"{what} ({state}):\n{p.log()[-3000:]}")

    def openvpn(self, ns: Netns, config_text: str, name: str, wait: float = START_WAIT) -> Proc:
        cfg = self.write(f"{name}.conf", config_text)
        p = self.start(ns, [OPENVPN, "--config", str(cfg)], name)
        if wait and not p.wait_for("Initialization Sequence Completed", wait):
            raise self._not_up(p, f"OpenVPN {name} did not come up within {wait:.0f} s")
        return p

    def ours(self, ns: Netns, config_text: str, name: str, wait: float = START_WAIT, pattern: str = "tunnel up",
             env: dict | None = None, readable_python: bool = False) -> Proc:
        """`readable_python`: for a config with `user`, run as on a normal host (readable_python_argv)."""
        cfg = self.write(f"{name}.ovpn", config_text)
        argv = [OUR_BIN, "run", str(cfg)]
        p = self.start(ns, readable_python_argv(argv) if readable_python else argv, name, env)
        if wait and not p.wait_for(pattern, wait):
            raise self._not_up(p, f"vpn-appliance {name} did not reach {pattern!r} within {wait:.0f} s")
        return p

    def udp_server(self, kind: str, config_text: str, name: str) -> Proc:
        """A UDP server in the server namespace, Debian's OpenVPN (`kind` "openvpn") or ours
        ("ours"), for the tests that run the same config against both: each waited for as it says
        it is up (OpenVPN's "Initialization Sequence Completed", ours "listening on UDP")."""
        if kind == "openvpn":
            return self.openvpn(self.srv, config_text, name)
        return self.ours(self.srv, config_text, name, pattern=r"listening on UDP")

    # ---- traffic
    def ping(self, ns: Netns, addr: str, count: int = 3, interval: float = 0.2, timeout: float = 20) -> int:
        r = ns.run(f"ping -n -q -c {count} -i {interval} -W 2 {addr}", check=False, timeout=timeout)
        m = re.search(r"(\d+) received", r.stdout)
        return int(m.group(1)) if m else 0

    def wait_ping(self, ns: Netns, addr: str, within: float = 20) -> bool:
        end = time.monotonic() + within
        while time.monotonic() < end:
            if self.ping(ns, addr, count=1, timeout=5) == 1:
                return True
            time.sleep(0.3)
        return False

    def tcp_transfer(self, server_ns: Netns, bind_ip: str, client_ns: Netns, nbytes: int = 2_000_000,
                     reverse: bool = False, port: int = 5201) -> float:
        """Send `nbytes` of a deterministic pattern over TCP through the tunnel and check every byte
        arrived (SHA-256). Direction: client→server, or server→client with `reverse`.
        Returns Mbit/s measured by the receiver, 0.0 on any failure."""
        return self.tcp_transfer_why(server_ns, bind_ip, client_ns, nbytes, reverse, port)[0]

    def tcp_transfer_why(self, server_ns: Netns, bind_ip: str, client_ns: Netns, nbytes: int = 2_000_000,
                         reverse: bool = False, port: int = 5201) -> tuple[float, str]:
        """tcp_transfer, with the reason of a failure ("" on success) for a report: which end
        failed, after how long, and what it printed."""
        py = sys.executable
        recv_ns, send_ns = (client_ns, server_ns) if reverse else (server_ns, client_ns)
        # The receiver listens on the tunnel side; with reverse the client listens on its tunnel address.
        listen_ip = bind_ip if not reverse else self._tun_ip(client_ns)
        recv = self.start(recv_ns, [py, "-c", _RECEIVER, listen_ip, str(port), str(nbytes)], f"recv-{port}")
        try:
            if not recv.wait_for("listening", 60):
                return 0.0, f"receiver on {listen_ip}:{port} never listened: {recv.log()[-300:]!r}"
            t0 = time.monotonic()
            r = send_ns.run(f"{py} -c '{_SENDER}' {listen_ip} {port} {nbytes}", check=False, timeout=120)
            if r.returncode != 0:
                return 0.0, (f"sender to {listen_ip}:{port} exited {r.returncode} after "
                             f"{time.monotonic() - t0:.1f} s: {r.stderr[-300:]!r}")
            if not recv.wait_for(r"(?m)^(ok|short) ", 60):
                return 0.0, f"receiver gave no verdict: {recv.log()[-300:]!r}"
            m = re.search(r"^ok (\S+) ([0-9.]+)", recv.log(), re.M)
            if m is None or m.group(1) != _pattern_digest(nbytes):
                return 0.0, f"bytes short or different: {recv.log()[-300:]!r}"
            return float(m.group(2)), ""
        finally:
            recv.stop(3)

    def _tun_ip(self, ns: Netns) -> str:
        """The client's tunnel address: on tun0, or on tap0 (a `dev tap` client); `inet A/BITS`
        (subnet topology) or `inet A peer B/32` (net30, p2p)."""
        for dev in ("tun0", "tap0"):
            out = ns.run(f"ip -4 -o addr show dev {dev}", check=False).stdout
            m = re.search(r"inet ([0-9.]+)[/ ]", out)
            if m:
                return m.group(1)
        return "0.0.0.0"

    def iperf(self, server_ns: Netns, bind_ip: str, client_ns: Netns, seconds: int = 5, port: int = 5201,
              extra: str = "") -> float:
        srv = self.start(server_ns, ["iperf3", "-s", "-1", "-B", bind_ip, "-p", str(port)], f"iperf-s-{port}")
        try:
            # Polled, not slept: a client started before the server listens is refused at once.
            listening = until(lambda: f":{port} " in server_ns.run(f"ss -Hltn 'sport = :{port}'", check=False).stdout
                               or srv.p.poll() is not None, 20)
            if not listening or srv.p.poll() is not None:
                return 0.0
            r = client_ns.run(f"iperf3 -c {bind_ip} -p {port} -t {seconds} -J {extra}", check=False,
                              timeout=seconds + 30)
            d = json.loads(r.stdout) if r.stdout.strip().startswith("{") else {}
            return d.get("end", {}).get("sum_received", {}).get("bits_per_second", 0) / 1e6
        finally:
            srv.stop(3)

    def close(self) -> None:
        for p in reversed(self.procs):
            try:
                p.stop_promptly(5)
            except Exception:  # noqa: BLE001 - cleanup must go on
                pass
        bad = logging_errors(self.ours_procs)
        for ns in reversed(self.ns):
            ns.delete()
        self._keep_logs()
        shutil.rmtree(self.tmp, ignore_errors=True)
        if bad:
            raise AssertionError(bad)

    def _keep_logs(self) -> None:
        """LAB_KEEP_LOGS=DIR: every process's log copied to DIR/<lab tag>/ before the lab's files
        go -- to read the timers both programs logged (restart pauses, reconnects) after a run
        that passed, when nothing else prints them."""
        keep = os.environ.get("LAB_KEEP_LOGS")
        if not keep:
            return
        dest = Path(keep) / self.tag
        dest.mkdir(parents=True, exist_ok=True)
        for f in self.tmp.glob("*.log"):
            with contextlib.suppress(OSError):
                shutil.copy2(f, dest / f.name)

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def logging_errors(procs: list[Proc]) -> str:
    """What our processes' logs show of a log call that could not be formatted (Python's logging
    prints `--- Logging error ---` with a traceback and goes on): the in-memory tests fail on
    such a call, but only for the lines they reach; this catches the rest at the labs' end."""
    out = []
    for p in procs:
        text = p.log()
        at = text.find("--- Logging error ---")
        if at >= 0:
            out.append(f"{p.log_path.name}: a log call of ours could not be formatted:\n{text[at:at + 3000]}")
    return "\n".join(out)


def until(pred, within: float, step: float = 0.05) -> bool:
    """Whether `pred()` holds within `within` seconds, asked every `step` s (and once at the end)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


_RECEIVER = """
import socket, sys, time, hashlib
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); s.settimeout(60)
print("listening", flush=True)
c, _ = s.accept(); c.settimeout(60); h = hashlib.sha256(); n = 0; t0 = None
want = int(sys.argv[3])
while n < want:
    d = c.recv(262144)
    if not d: break
    if t0 is None: t0 = time.monotonic()
    h.update(d); n += len(d)
dt = max(time.monotonic() - (t0 or time.monotonic()), 1e-6)
print("ok" if n == want else "short", h.hexdigest(), round(n * 8 / dt / 1e6, 1), flush=True)
"""
_SENDER = "import socket,sys;c=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=30);n=int(sys.argv[3]);b=bytes(range(256))*4096;[c.sendall(b[:min(len(b),n-i)]) for i in range(0,n,len(b))];c.close()"


def _pattern_digest(n: int) -> str:
    b = bytes(range(256)) * 4096
    h = hashlib.sha256()
    for i in range(0, n, len(b)):
        h.update(b[:min(len(b), n - i)])
    return h.hexdigest()
