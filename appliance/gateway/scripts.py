"""client-connect / client-disconnect scripts, run off the event loop (as auth.py runs password
checks): a worker thread starts the command with OpenVPN's environment and a time limit, and the
pump applies the verdict (ServerDispatcher.connect_result) when the worker wakes it.

As OpenVPN: the connect script gets one argument, a file it may write per-client options into
(push, push-reset, ifconfig-push, iroute: a ccd file's syntax); a non-zero exit refuses the client.
A script that runs past its time limit is killed and counts as a refusal (connect) or is only
logged (disconnect). Scripts run only with `script-security 2` (checked when the gateway starts).
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import tempfile
import threading
from collections import deque

from ..frozen_record import FrozenRecord
from ..openvpn.config import parse_ccd
from ..openvpn.errors import ConfigError
from ..openvpn.peernames import file_text
from ..openvpn.regular_file import CONNECT_OPTIONS, read_regular_file
from .offloop import OffLoopWorkers

log = logging.getLogger("vpn-appliance")

TIME_LIMIT = 10.0
WORKERS = 2
MAX_PENDING = 64


def kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)      # the command and whatever it started
    except OSError:
        pass


class Running:
    """The commands a worker pool runs now, so that stop() ends them and any started after. Why:
    a stopping server's exit waits for its worker threads, and a command still waiting on a silent
    directory server kept the process alive until its time limit (hand-window, 60 s by default)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen] = set()
        self.stopped = False

    def add(self, p: subprocess.Popen) -> None:
        with self._lock:
            self._procs.add(p)
            if self.stopped:
                kill_group(p)

    def discard(self, p: subprocess.Popen) -> None:
        with self._lock:
            self._procs.discard(p)

    def stop(self) -> None:
        with self._lock:
            self.stopped = True
            for p in self._procs:
                kill_group(p)


def run_limited(args: list[str], env: dict[str, str], time_limit: float, stdout=None, stderr=None,
                running: Running | None = None) -> int | None:
    """Run `args` in a session of its own, stdin closed, and wait up to `time_limit`: its exit
    status, or None when it ran past the limit (or `running` was stopped) and was killed with
    everything it started (its process group). Nothing waits on its output, so a child it leaves
    behind holds nothing up. OSError when it cannot be started."""
    p = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                         start_new_session=True)
    if running is not None:
        running.add(p)
    try:
        status = p.wait(timeout=time_limit)
    except subprocess.TimeoutExpired:
        kill_group(p)
        p.wait()
        return None
    finally:
        if running is not None:
            running.discard(p)
    return None if running is not None and running.stopped else status


CONNECT_OUTPUT = "<client-connect output>"       # the options file's name in errors


class ConnectOutput(FrozenRecord):
    """What a client-connect command wrote into its options file, then the lines given to go
    after it (management client-auth's), parsed in the worker: up to 1 MiB of `push` lines took
    ~0.25 s to parse, on the loop before. `options` is parse_ccd's result (None when it failed:
    `error` says why)."""
    text: str
    options: object | None
    error: ConfigError | None


def _parsed(text: str, after: str = "") -> ConnectOutput:
    """The script's options, then `after`'s lines over them: OpenVPN 2.6 imports the management
    client's client-auth lines after the script's file (multi.c client_connect_handlers:
    multi_client_connect_mda last), so its `ifconfig-push` wins."""
    if after:
        text = text + ("\n" if text and not text.endswith("\n") else "") + after
    try:
        return ConnectOutput(text, parse_ccd(text, CONNECT_OUTPUT), None)
    except ConfigError as e:
        return ConnectOutput(text, None, e)


class ScriptRunner(OffLoopWorkers):
    """submit(key, argv, env, connect) -> None, or why it was refused; verdicts from take_results()
    as (key, ok, ConnectOutput (client-connect's) or None, reason). `inline=True` runs in the caller (tests)."""

    def __init__(self, time_limit: float = TIME_LIMIT, inline: bool = False) -> None:
        self.time_limit = time_limit
        self.inline = inline
        # Where client-connect's options file is made: tmp-dir (or $TMPDIR, /tmp: config/d_ops.py),
        # as OpenVPN 2.6 makes it there (multi_client_connect_call_script); set by the server.
        self.tmp_dir: str | None = None
        self.results: deque = deque()
        self.pending = 0
        self.ran = 0
        super().__init__(inline, WORKERS, "script")
        self.running = Running()

    def submit(self, key: object, argv: list[str], env: dict[str, str], connect: bool,
               arg_text: bytes | None = None, after: str = "") -> str | None:
        """`connect`: a file the command writes options into goes last (client-connect), and
        `after`'s lines are parsed after what it wrote (ConnectOutput); `arg_text`: a file
        holding these bytes goes last instead (client-crresponse's answer)."""
        if self.pending >= MAX_PENDING:
            return "too many scripts running"
        self.pending += 1
        if self._pool is None:
            self.results.append(self._run(key, argv, env, connect, arg_text, after))
            return None
        fut = self._pool.submit(self._run, key, argv, env, connect, arg_text, after)
        fut.add_done_callback(self._done)
        return None

    def _done(self, fut) -> None:
        if fut.cancelled():
            return
        self.results.append(fut.result())
        self._ring()

    def _run(self, key: object, argv: list[str], env: dict[str, str], connect: bool, arg_text: bytes | None = None,
             after: str = ""):
        path = None
        args = list(argv)
        try:
            if connect or arg_text is not None:
                fd, path = tempfile.mkstemp(prefix="openvpn_cc_" if connect else "openvpn_cr_", suffix=".tmp",
                                            dir=self.tmp_dir)
                os.write(fd, arg_text or b"")
                os.close(fd)
                args.append(path)
            full_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
            full_env.update(env)
            # Its error output goes to a file, not a pipe: a script that leaves a child behind
            # (a daemon it starts, a `... &`) holding the pipe kept the wait going until the time
            # limit, then was killed with that child and its client refused.
            with tempfile.TemporaryFile() as err_f:
                try:
                    status = run_limited(args, full_env, self.time_limit, subprocess.DEVNULL, err_f, self.running)
                except OSError as e:
                    return key, False, None, f"cannot run {argv[0]}: {e.strerror or e}"
                if status is None:
                    return key, False, None, f"{os.path.basename(argv[0])} ran past its {self.time_limit:g} s limit"
                if status != 0:
                    err_f.seek(max(0, os.fstat(err_f.fileno()).st_size - 4096))
                    err = err_f.read(4096).decode("utf-8", "replace").strip().splitlines()
                    return key, False, None, (f"{os.path.basename(argv[0])} exited with status {status}"
                                              + (f": {err[-1][:200]}" if err else ""))
            text = None
            if path is not None and connect:
                # Whole, as OpenVPN 2.6 reads it (its bytes: file_text), or not at all: the first
                # 64 KiB read before dropped a `disable` written after them (its client let in)
                # and cut a line in two. Over a ccd file's limit the client is refused; a pipe
                # the command left at the path is refused too (open() would wait for a writer).
                try:
                    text = file_text(read_regular_file(path, CONNECT_OPTIONS))
                except OSError as e:
                    return key, False, None, f"cannot read its options file: {e.strerror or e}"
                return key, True, _parsed(text, after), ""
            return key, True, text, ""
        except Exception as e:  # noqa: BLE001 - a broken run refuses, it does not accept
            return key, False, None, f"script failed: {e}"
        finally:
            if path is not None:
                try:
                    os.unlink(path)
                except OSError:
                    pass

    def take_results(self) -> list:
        out = []
        while self.results:
            out.append(self.results.popleft())
            self.pending -= 1
            self.ran += 1
        return out

    def close(self) -> None:
        self.running.stop()                 # (the process's exit would wait for them)
        self._shutdown()
