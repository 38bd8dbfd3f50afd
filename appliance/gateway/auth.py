"""Password checks off the event loop, bounded per source address and in total.

Why: a check is slow on purpose (scrypt, ~45 ms); run inside the loop, about 25 bogus logins a
second would stall every tunnel. The engine hands each check out as an AuthRequested event; this
module runs it in a worker thread (hashlib.scrypt releases the GIL), and the pump applies the
verdict with ServerDispatcher.auth_result when the worker wakes it. A source that asks for too
many checks at once, or too often, gets a refusal without a check; so does a client certificate
with PER_IDENTITY_PENDING checks waiting (gateway/slots.py); so does everyone while the queue is
full. Such a refusal is temporary (AUTH_FAILED,TEMP: the client retries after its
backoff), so a burst of legitimate logins, after a restart say, gets in over a few rounds.
Refusals are counted by reason.

The check is the passdb's (verify(username, password, common_name) -> bool) or a command's
(authscript.ScriptCheck: with the client's environment too, -> Verdict); a command may defer its
verdict to a file, which poll() reads until hand-window ends (the loop calls it on a timer while
any wait: next_poll).
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future
from typing import Callable

from ..openvpn.sources import source_group
from .authscript import Verdict, client_reason, control_state, remove
from .offloop import OffLoopWorkers
from .slots import IDENTITY, SOURCE, TOTAL, Slots

Verify = Callable[..., "bool | Verdict"]

MAX_PENDING = 128              # checks queued or running, all sources together (~6 s of scrypt)
PER_SOURCE_PENDING = 2         # at once, per source address
PER_SOURCE_RATE = (10, 10.0)   # at most 10 checks per 10 s per source address (token bucket)
POLL_EVERY = 0.25              # how often deferred verdicts' files are read
# Deferred verdicts waiting at once per login name (the username; the common name for a login
# without one). A command defers once the password checked out (a push to the user's phone), so
# each waiting check is a valid login: without this, one stolen password from many addresses
# held the whole queue (max_pending) for hand-window and every other login was refused TEMP.
DEFERRED_PER_USER = 4
# Checks queued, running or deferred at once per client certificate (its fingerprint). Why: the
# check runs for anyone past TLS, so ONE valid certificate (with any usernames) from 64 addresses
# held a password file's whole queue, and from 16 addresses a command's (16 per source, for an
# office behind NAT), while the command was slow (a directory lookup); every other login was
# refused TEMP. 4: a client has one login checked at a time (two while a reconnect overtakes a
# stale one), as DEFERRED_PER_USER. Not per username: a username is anybody's to send, so a cap
# on it would close nothing (a flood picks other names) and would let anyone lock a named user
# out with 4 wrong-password logins held by a slow command.
PER_IDENTITY_PENDING = 4


class AuthChecker(OffLoopWorkers):
    """submit() a check; its verdict comes back from take_results(). `inline=True` checks at once
    in the caller's thread (deterministic, for tests on a fake clock)."""

    def __init__(self, verify: Verify, clock: Callable[[], float], inline: bool = False,
                 max_pending: int | None = None, per_source_pending: int | None = None,
                 per_source_rate: tuple[int, float] | None = None,
                 per_identity_pending: int = PER_IDENTITY_PENDING) -> None:
        """The limits: as given, else the check's own (a command's: authscript.ScriptCheck),
        else this module's (a password file's scrypt)."""
        self.verify = verify
        self.clock = clock
        self.inline = inline
        self.max_pending = max_pending if max_pending is not None else getattr(verify, "max_pending", MAX_PENDING)
        self.per_source_pending = (per_source_pending if per_source_pending is not None
                                   else getattr(verify, "per_source_pending", PER_SOURCE_PENDING))
        self.rate_n, self.rate_sec = (per_source_rate if per_source_rate is not None
                                      else getattr(verify, "per_source_rate", PER_SOURCE_RATE))
        self.slots = Slots(self.max_pending, self.per_source_pending, per_identity_pending)
        self.pending: dict[str, int] = self.slots.by_source     # source -> checks queued, running or deferred
        self.tokens: dict[str, tuple[float, float]] = {}     # source -> (tokens, at)
        self.results: deque = deque()                       # (key, held, who, Verdict), appended by workers
        # (key, held, verdict, deadline, who); held: (source, identities), what the check holds in `slots`
        self.deferred: list[tuple[object, tuple, Verdict, float, str]] = []
        self.defer_limit = float(getattr(verify, "defer_limit", 60.0))
        self.refused: dict[str, int] = {}
        self.checked = 0
        super().__init__(inline, getattr(verify, "workers", 1), "auth-check")
        self._closed = False
        self._polled_at = float("-inf")     # when poll() last read the deferred checks' files
        self.pending_requests: list[tuple[object, tuple[int, str]]] = []   # (key, (timeout, text)): tell the client

    def submit(self, key: object, source: str, username: str, password: str, common_name: str | None,
               env: dict[str, str] | None = None, cert_identity: str | None = None) -> str | None:
        """Queue a check; None when queued, else why it was refused without one. An IPv6 source
        counts as its /64 (openvpn/sources.py). `env`: the client's environment, for a command.
        `cert_identity`: the client certificate's (slots.identity_of_cert), None without one."""
        source = source_group(source)
        identities = (cert_identity,) if cert_identity else ()
        why = self._admit(source, identities)
        if why is not None:
            self.refused[why] = self.refused.get(why, 0) + 1
            return why
        held = (source, identities)
        self.slots.take(*held)
        who = username or (common_name or "")
        if self._pool is None:
            self._finish(key, held, who, self._check(username, password, common_name, env))
            return None
        fut = self._pool.submit(self._check, username, password, common_name, env)
        fut.add_done_callback(lambda f: self._finished_in_thread(key, held, who, f))
        return None

    _WHY = {TOTAL: "password check refused: too many checks queued",
            SOURCE: "password check refused: too many at once from one address",
            IDENTITY: "password check refused: too many at once for one certificate"}

    def _admit(self, source: str, identities: tuple[str, ...] = ()) -> str | None:
        cap = self.slots.refusal(source, identities)
        if cap is not None:
            return self._WHY[cap]
        now = self.clock()
        tokens, at = self.tokens.get(source, (float(self.rate_n), now))
        tokens = min(float(self.rate_n), tokens + (now - at) * self.rate_n / self.rate_sec)
        if tokens < 1.0:
            self.tokens[source] = (tokens, now)
            return "password check refused: too many from one address"
        self.tokens[source] = (tokens - 1.0, now)
        if len(self.tokens) > 4096:                          # forget sources with full buckets
            full = [s for s, (t, a) in self.tokens.items() if t + (now - a) * self.rate_n / self.rate_sec >= self.rate_n]
            for s in full:
                del self.tokens[s]
        return None

    def _check(self, username: str, password: str, common_name: str | None, env: dict[str, str] | None) -> Verdict:
        try:
            r = (self.verify(username, password, common_name) if env is None
                 else self.verify(username, password, common_name, env))
        except Exception:  # noqa: BLE001 - a broken check refuses, it does not accept
            return Verdict(False, why="the check failed")
        return r if isinstance(r, Verdict) else Verdict(bool(r))

    def _finished_in_thread(self, key: object, held: tuple, who: str, fut: Future) -> None:
        v = fut.result() if not fut.cancelled() and fut.exception() is None else Verdict(False)
        self._finish(key, held, who, v)
        if self._closed:
            # A check that ended after close() (a reload between a password file and a command):
            # nobody reads this checker any more, so a deferred one's files go now.
            self._discard_results()
        else:
            self._ring()

    def _discard_results(self) -> None:
        while True:
            try:
                _key, _held, _who, v = self.results.popleft()
            except IndexError:
                return
            remove(v.control, v.reason_file)

    def _finish(self, key: object, held: tuple, who: str, v: Verdict) -> None:
        self.results.append((key, held, who, v))

    def take_results(self, wanted: Callable[[object], bool] | None = None) -> list[tuple[object, Verdict]]:
        """The verdicts come in since the last call, deferred ones once their file says or their
        time is up (each source's slot stays taken while its verdict is deferred). `wanted(key)`:
        False once nobody waits for that verdict (the session ended): its deferred check is
        dropped then, files and slot (poll)."""
        out = []
        while self.results:
            key, held, who, v = self.results.popleft()
            if v.control is not None:
                if sum(1 for d in self.deferred if d[4] == who) < DEFERRED_PER_USER:
                    # A pending auth (auth_pending_file) waits its own timeout, else hand-window;
                    # the session's own bound still ends it sooner (Session.auth_pending).
                    wait = max(self.defer_limit, v.pending[0]) if v.pending else self.defer_limit
                    self.deferred.append((key, held, v, self.clock() + wait, who))
                    if v.pending:
                        self.pending_requests.append((key, v.pending))
                    continue
                remove(v.control, v.reason_file)
                v = Verdict(False, why=f"more than {DEFERRED_PER_USER} logins of {who!r} waiting for a deferred "
                                       "verdict at once")
            self._done(held)
            out.append((key, v))
        if self.deferred and self.clock() >= self._polled_at + POLL_EVERY:
            # Not at every wake-up: the loop wakes for each batch of packets, and reading 128
            # files took ~1.6 ms of it each time.
            out += self.poll(wanted)
        return out

    def poll(self, wanted: Callable[[object], bool] | None = None) -> list[tuple[object, Verdict]]:
        """Deferred verdicts now decided: `1` or `0` in auth_control_file, or hand-window over.
        A check whose session is gone (`wanted` says no) ends without a verdict, its files
        removed and its source's slot freed at once, as OpenVPN 2.6 removes a key state's
        files with it (ssl_verify.c key_state_rm_auth_control_files): left until hand-window,
        two clients that left mid-check kept every login from their address refused."""
        out = []
        now = self._polled_at = self.clock()
        waiting = []
        for item in self.deferred:
            key, held, v, deadline, _who = item
            if wanted is not None and not wanted(key):
                remove(v.control, v.reason_file)
                self._done(held)
                continue
            state = control_state(v.control)
            if state is None and now < deadline:
                waiting.append(item)
                continue
            if state is True:
                done = Verdict(True)
            else:
                done = Verdict(False, client_reason=client_reason(v.reason_file),
                               why="the deferred check said no" if state is False
                               else "the deferred check gave no verdict within hand-window")
            remove(v.control, v.reason_file)
            self._done(held)
            out.append((key, done))
        self.deferred = waiting
        return out

    def next_poll(self) -> float | None:
        """When take_results next reads the deferred checks' files (None: none waits)."""
        return max(self.clock(), self._polled_at + POLL_EVERY) if self.deferred else None

    def _done(self, held: tuple) -> None:
        self.slots.free(*held)
        self.checked += 1

    def close(self) -> None:
        self._closed = True
        stop = getattr(self.verify, "stop", None)
        if stop is not None:
            stop()                          # a command's: its running commands end now
        self._discard_results()
        for _key, _source, v, _deadline, _who in self.deferred:
            remove(v.control, v.reason_file)
        self.deferred.clear()
        self._shutdown()
