"""client-crresponse runs: which client answers (CR_RESPONSE) start their command now and which
wait for a slot.

Why a limit of its own: the commands share the server's script runner (gateway/scripts.py, 64
waiting at most, two running) with client-connect, client-disconnect and learn-address. Each
client may send 8 answers per key (openvpn/roles.py CR_RESPONSES) while its login waits, and a
login waits as soon as the password check defers it (for a single sign-on, before any password):
a few such clients filled the runner, and every other client's client-connect was refused ("too
many scripts running") and client-disconnect not run. Here a login has at most one command
running and one answer waiting (the newest: an older waiting one is replaced, as a user's
corrected answer would be), and at most RUNNING run at once in all, so the runner always has
room for the others. OpenVPN 2.6 runs the command on its only thread, each answer in turn.
"""
from __future__ import annotations

from typing import Callable, Hashable

RUNNING = 4


class CrResponseRuns:
    """offer(key, item) -> item to start now, or None (it waits); done(key, still_wanted) ->
    the waiting items to start now that `key`'s run ended."""

    def __init__(self, running: int = RUNNING) -> None:
        self.limit = running
        self.running: set[Hashable] = set()
        self.waiting: dict[Hashable, object] = {}       # oldest first

    def offer(self, key: Hashable, item: object) -> object | None:
        if key in self.running or len(self.running) >= self.limit:
            self.waiting.pop(key, None)
            self.waiting[key] = item
            return None
        self.running.add(key)
        return item

    def done(self, key: Hashable, still_wanted: Callable[[object], bool]) -> list[object]:
        self.running.discard(key)
        out = []
        for k in list(self.waiting):
            if len(self.running) >= self.limit:
                break
            if k in self.running:
                continue
            item = self.waiting.pop(k)
            if still_wanted(item):
                self.running.add(k)
                out.append(item)
        return out
