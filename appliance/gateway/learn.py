"""`learn-address CMD` as OpenVPN 2.6 runs it (multi.c learn_address_script, multi_learn_addr,
multi_client_connect_late_setup, multi_reap_range), on the server's pump.

When: once a client is admitted (after client-connect and client-auth said yes, before its push
reply), for each address that will be routed to it, in OpenVPN's order: its IPv4 address, its
IPv6 address, then its iroutes (last line first). Arguments: `add ADDRESS CN`, or `update ADDRESS
CN` when another live client holds that route now (an ifconfig-push address or iroute two clients
share; the newer takes it); environment: the client's, as client-connect's, with
script_type=learn-address. A non-zero exit (or a command that cannot run or runs past its time
limit, which OpenVPN does not have: it waits for ever, its whole server with it) means the address
is not learned: nothing is routed to that client there and nothing from it with that source
passes, while the client stays connected (its push still names the address), as with OpenVPN.
`delete ADDRESS` (no CN, only script_type in its environment) for each address a client had
learned and still holds, when it leaves and at the server's stop -- unless, by the delete's turn,
another client has learned that address (its `update` was running at the leave: atk44).

Off the loop: the commands run in the ScriptRunner's workers (as client-connect); the client's
push waits for its last `add`, so its address never carries traffic before the command has
decided. Per address, one command at a time, in the order asked (AddressQueue): a client's
`delete` never overtakes its own `add`, and a new client given the same address right after gets
its `add` after the old one's `delete`. A client that leaves while its `add` waits has it dropped;
one that leaves while its `add` runs gets its `delete` after it, if the add succeeded.

Bounds: the adds of one client wait in the queues while it is being admitted (max-clients of them
at most); when the runner is full (MAX_PENDING), a client's admission is refused for now (it
retries, as after a refused client-connect); a `delete` is never dropped: it waits in its
address's queue and is tried again shortly.
"""
from __future__ import annotations

import logging
import os
import subprocess
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from ..openvpn.keymethod import remap_name
from .scripts import TIME_LIMIT, run_limited

log = logging.getLogger("vpn-appliance")

RETRY = 0.5             # seconds: a delete the runner had no room for is tried again after this
STOP_BUDGET = 10.0      # seconds: all the deletes run at the server's stop, together


@dataclass(eq=False)
class Job:
    op: str                          # add | update | delete
    text: str                        # the address as OpenVPN prints it
    argv: list                       # the command (a delete: the one that learned the address)
    key: object = None               # the dispatcher's key of it (unlearn)
    rec: object = None               # the client (add/update)
    prev: object = None              # the client holding that route before (update)
    admit: "Admit | None" = None
    env: dict = field(default_factory=dict)
    chain: "deque | None" = None     # the jobs that follow this one (one client's, in order)
    then: "Callable[[bool], None] | None" = None   # a MAC's add/update (dev tap): its verdict, to the switch
    kept: bool = False               # never dropped for a full runner, as a delete (a MAC named again)
    # A leaver's delete (left()): dropped if, by its turn, another client has learned the address
    # -- an `update` that ran while the leaver still held it, finishing after the leave.
    at_leave: bool = False


@dataclass(eq=False)
class Admit:
    """One client's adds, until the last is in."""
    rec: object
    left: int
    refused: list = field(default_factory=list)     # (key, prev) of the addresses not learned


class LearnAddress:
    def __init__(self, ops) -> None:
        self.ops = ops
        self.queues: dict[str, deque[Job]] = {}     # address -> its jobs, the head running (or due)
        self.running: set[str] = set()              # addresses whose head job is in the runner
        self.owner: dict[str, tuple] = {}           # address -> (the client that learned it, the command)
        self.held: dict[int, dict[str, None]] = {}  # id(client) -> the addresses it owns, learned order
        self.admits: dict[int, Admit] = {}          # id(rec) -> its adds in progress
        self.calls = 0
        self.stopping = False                       # stop(): nothing more goes to the runner

    # ---------------------------------------------------------------- from Operations
    def admit(self, rec, argv: list, env: dict) -> bool:
        """Run the adds for `rec`'s addresses, one after another; Operations.admitted(rec,
        refused) when all are in. False when there is nothing to learn (admitted at once)."""
        # (those it holds already, handed over from the session its restart replaced: hand_over)
        addrs = [a for a in self.ops.gw.d.learnable(rec) if not self.holds(rec, a[0])]
        if not addrs:
            return False
        a = self.admits[id(rec)] = Admit(rec, len(addrs))
        jobs = deque(Job("add", text, list(argv), key, rec, admit=a, env=dict(env)) for text, key in addrs)
        self._start_chain(jobs)
        return True

    def holds(self, rec, text: str) -> bool:
        """Whether `rec` holds `text` learned, with nothing else asked for it meanwhile."""
        owner = self.owner.get(text)
        return owner is not None and owner[0] is rec and not self.queues.get(text)

    def hand_over(self, old, heir) -> None:
        """`old` ended, replaced by `heir`, its restart in place (one OpenVPN 2.6 instance going
        on, CAS_RECONNECT_PENDING): what `old` learned is `heir`'s now, nothing run -- 2.6's
        routes stay with the instance; no delete, and no add or update for the restart (admit
        skips what it holds). Deleted when `heir` leaves, as any address it learned."""
        self.admits.pop(id(old), None)
        mine = self.held.pop(id(old), None)
        if not mine:
            return
        theirs = self.held.setdefault(id(heir), {})
        for text in mine:
            self.owner[text] = (heir, self.owner[text][1])
            theirs[text] = None

    def learn_mac(self, rec, text: str, argv: list, env: dict, then: Callable[[bool], None]) -> None:
        """dev tap: `rec` sends from MAC `text` (2.6's form, `aa:bb:cc:dd:ee:ff@0`) new to it:
        `add` (or `update`, another client held it), its verdict to `then` -- False too when
        it could not be run. As an address's, in that MAC's queue after any earlier job."""
        self._enqueue(Job("add", text, list(argv), text, rec, env=dict(env), then=then))

    def relearn_mac(self, rec, text: str, argv: list, env: dict) -> None:
        """dev tap: the switch kept MAC `text` with `rec` after the command said yes to another
        client for it (l2switch.py _give_back): `update MAC CN` for `rec`, so the command's view
        ends as the switch's. Kept until run, as a delete: dropped, that view stayed wrong."""
        self._enqueue(Job("add", text, list(argv), text, rec, env=dict(env), kept=True))

    def forget_mac(self, rec, text: str) -> None:
        """dev tap: `rec` no longer holds MAC `text` (its quota full): `delete`, if it learned it."""
        owner = self.owner.get(text)
        if owner is not None and owner[0] is rec:
            self._disown(text)
            self._enqueue(Job("delete", text, owner[1]))

    def left(self, rec) -> None:
        """`rec` is gone: a delete for each address it learned and still holds, one after another.
        Found through `held`, not by scanning every owner: with dev tap a server holds up to 256 MACs
        per client, and a mass disconnect (an outage) scanned them all at each leave, on the loop."""
        self.admits.pop(id(rec), None)
        jobs = deque()
        for text in self.held.pop(id(rec), ()):
            jobs.append(Job("delete", text, self.owner.pop(text)[1], at_leave=True))
        self._start_chain(jobs)

    def done(self, job: Job, ok: bool, reason: str) -> None:
        """A job's verdict, from the runner."""
        self.running.discard(job.text)
        q = self.queues.get(job.text)
        if q and q[0] is job:
            q.popleft()
        if not q:
            self.queues.pop(job.text, None)
        self.calls += 1
        if job.op == "delete":
            if not ok:
                log.warning("learn-address delete %s: %s", job.text, reason)
        else:
            self._learned(job, ok, reason)
        self._start_chain(job.chain)
        self._next(job.text)

    def stop(self) -> None:
        """The server stops: as OpenVPN's multi_uninit (multi_reap_all), a delete for every
        address learned; here also for those whose add or delete was cut short (a delete undoes
        nothing a firewall script would miss). Run here, in order, within STOP_BUDGET: first the
        commands under way are waited for (a delete cut short and run again was a delete twice)."""
        self.stopping = True
        runner = self.ops.scripts
        limit = runner.time_limit if runner is not None else TIME_LIMIT
        wait_end = time.monotonic() + min(limit, STOP_BUDGET)      # (a command is killed at its limit)
        while self.running and runner is not None and time.monotonic() < wait_end:
            for key, ok, _text, reason in runner.take_results():
                if key[0] == "learn":
                    self.done(key[1], ok, reason)
            if self.running:
                time.sleep(0.01)
        todo: dict[str, list] = {}
        for t, q in self.queues.items():
            for j in q:
                if j.op == "delete" or (t in self.running and j is q[0]):
                    todo.setdefault(t, j.argv)
                for c in j.chain or ():
                    if c.op == "delete":
                        todo.setdefault(c.text, c.argv)
        for t, (_, argv) in self.owner.items():
            todo.setdefault(t, argv)
        self.owner.clear()
        self.held.clear()
        self.queues.clear()
        self.running.clear()
        self.admits.clear()
        if not todo:
            return
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "script_type": "learn-address"}
        end = time.monotonic() + STOP_BUDGET
        items = list(todo.items())
        for i, (t, argv) in enumerate(items):
            left = end - time.monotonic()
            if left <= 0:
                log.warning("learn-address: %d deletes not run at stop (over %g s)", len(items) - i, STOP_BUDGET)
                return
            try:
                st = run_limited([*argv, "delete", t], env, min(left, limit), subprocess.DEVNULL, subprocess.DEVNULL)
            except OSError as e:
                log.warning("learn-address delete %s: cannot run: %s", t, e)
                continue
            if st != 0:
                log.warning("learn-address delete %s: %s", t, "ran past its time limit" if st is None
                            else f"exited with status {st}")

    # ---------------------------------------------------------------- inside
    def _disown(self, text: str) -> None:
        """`text` is no one's now (owner and held together: the one place that drops both)."""
        old = self.owner.pop(text, None)
        if old is not None:
            mine = self.held.get(id(old[0]))
            if mine is not None:
                mine.pop(text, None)
                if not mine:
                    del self.held[id(old[0])]

    def _start_chain(self, jobs: "deque | None") -> None:
        while jobs:
            job = jobs.popleft()
            if job.op != "delete" and not job.rec.alive:
                continue                        # it left before its turn: nothing to add
            job.chain = jobs
            self._enqueue(job)
            return

    def _learned(self, job: Job, ok: bool, reason: str) -> None:
        rec, a = job.rec, job.admit
        if ok:
            if rec.alive:
                self._disown(job.text)          # an update: no longer the previous holder's
                self.owner[job.text] = (rec, job.argv)
                self.held.setdefault(id(rec), {})[job.text] = None
            else:
                # It left while its add ran: undone next, before whatever waits for the address
                # (a new client given it meanwhile: its add must follow this delete).
                self.queues.setdefault(job.text, deque()).appendleft(Job("delete", job.text, job.argv))
        else:
            log.warning("%s: learn-address %s %s refused: %s (nothing routed there to this client)",
                        rec.common_name, job.op, job.text, reason)
        if job.then is not None:
            job.then(ok)
        if a is None:
            return
        if not ok:
            a.refused.append((job.key, job.prev))
        a.left -= 1
        if a.left == 0 and self.admits.get(id(rec)) is a:
            del self.admits[id(rec)]
            if not self.stopping:
                self.ops.admitted(rec, a.refused)

    def _enqueue(self, job: Job) -> None:
        q = self.queues.setdefault(job.text, deque())
        q.append(job)
        if len(q) == 1:
            self._next(job.text)

    def _next(self, text: str) -> None:
        """Start the head job of `text`'s queue, if none runs."""
        if text in self.running or self.stopping:
            return
        q = self.queues.get(text)
        while q:
            job = q[0]
            if job.at_leave and (owner := self.owner.get(text)) is not None and owner[0].alive:
                # Another client learned it after this one left (its update was running then):
                # the command holds it as theirs, and a delete would undo that. OpenVPN 2.6 runs
                # its command inline and deletes only the routes the closing instance still owns.
                q.popleft()
                self._start_chain(job.chain)    # the leaver's other deletes go on
                continue
            if job.op != "delete":
                if not job.rec.alive:
                    q.popleft()                 # it left before its turn: nothing was added
                    continue
                # Decided when it runs, not when asked: the holder may have left meanwhile.
                owner = self.owner.get(text)
                prev = owner[0] if owner is not None and owner[0] is not job.rec and owner[0].alive else None
                job.op, job.prev = ("update", prev) if prev is not None else ("add", None)
            why = self._submit(job)
            if why is None:
                self.running.add(text)
                return
            if job.op == "delete" or job.kept:  # never dropped: tried again shortly
                self.ops.gw.pump.timers.arm(f"learn-retry-{text}", self.ops.gw.clock() + RETRY,
                                            lambda t=text: self._next(t))
                return
            q.popleft()
            if job.then is not None:
                job.then(False)                 # not run (the runner full): asked again later
            a = job.admit
            if a is not None and self.admits.get(id(job.rec)) is a:
                del self.admits[id(job.rec)]    # refused for now: it retries
                self.ops.admit_failed(job.rec, f"learn-address not run: {why}")
        if q is not None and not q:
            self.queues.pop(text, None)

    def _submit(self, job: Job) -> str | None:
        args = [*job.argv, job.op, job.text]
        if job.op == "delete":
            env = {"script_type": "learn-address"}
        else:
            args.append(remap_name(job.rec.common_name) if job.rec.common_name else "UNDEF")
            env = job.env
        return self.ops.scripts.submit(("learn", job), args, env, False)
