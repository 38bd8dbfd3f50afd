"""Pushed DNS on the host (`vpn-appliance run profile.ovpn`): the observer that follows the tunnel.

What users expect from update-systemd-resolved / update-resolv-conf: while the tunnel is up the
host resolves with the servers and domains the VPN server pushed; when it goes down or the
program ends (SIGTERM/SIGINT: the gateway's cleanup calls `close`) the host's resolver is as it
was; after a crash the next start puts it back (resolv_conf.py keeps the original inside the file).

The backend is chosen once, at attach: systemd-resolved per link when it runs (resolved.py),
otherwise /etc/resolv.conf (resolv_conf.py). Not used in the VM: there the LAN DNS forwarder
takes the pushed servers, and the appliance's own resolver is not touched.

A resolver that refuses (read-only /etc, resolvectl failing) is logged and the tunnel goes on:
DNS is the host's convenience, never a reason to drop the tunnel.

The work runs in one worker thread, in order: resolvectl is a process to start and wait for (up
to 5 s each when resolved hangs), which must not stall the pump that moves the tunnel's packets.
Nothing comes back to the pump (outcomes are logged), so no Wake is needed; `close` waits for
the worker to finish the restore, so the host's resolver is back before the program exits.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
from typing import TYPE_CHECKING, Callable, Protocol

from .dns_settings import DnsSettings, from_pushed
from .resolv_conf import RESOLV_CONF, ResolvConf
from .resolved import Resolved, resolved_running

if TYPE_CHECKING:
    from ..gateway.loop import Pump
    from ..gateway.observers import ClientCounters, TunnelState

log = logging.getLogger("vpn-appliance")


class Backend(Protocol):
    def apply(self, dns: DnsSettings, link: str) -> None: ...

    def restore(self) -> None: ...


def choose_backend(resolv_conf: str = RESOLV_CONF, held_fd: int | None = None, run=None) -> Backend:
    """`held_fd`, `run`: what HostDns.before_privilege_drop prepared (resolv.conf opened, the
    resolvectl helper)."""
    if resolved_running():
        log.info("host DNS: systemd-resolved is running; pushed DNS goes to the tunnel's link")
        return Resolved(run) if run is not None else Resolved()
    rc = ResolvConf(resolv_conf, held_fd)
    rc.recover()
    log.info("host DNS: no systemd-resolved; pushed DNS goes into %s while the tunnel is up", resolv_conf)
    return rc


class HostDns:
    """TunnelObserver: apply the pushed DNS while the tunnel is up, undo it otherwise.
    `threaded=False` does the work inline (tests)."""

    CLOSE_WAIT = 30.0            # seconds close() waits for the worker's restore

    def __init__(self, redirect_gateway: list[str] | None = None,
                 backend: Callable[[], Backend] = choose_backend, threaded: bool = True,
                 redirect_private: list[str] | None = None,
                 redirect_lines: "list[tuple[bool, list[str]]] | None" = None) -> None:
        self.redirect_gateway = redirect_gateway      # the profile's own, the pushed ones added to it
        self.redirect_private = redirect_private
        self.redirect_lines = list(redirect_lines or ())  # the profile's lines in order (redirect_in_effect)
        self._make = backend
        self.backend: Backend | None = None
        self.errors = 0
        self._jobs: "queue.SimpleQueue[tuple | None]" = queue.SimpleQueue()
        self._worker: threading.Thread | None = None
        self._threaded = threaded
        self._helper = None                   # the resolvectl helper, after a privilege drop
        self._last: tuple | None = None       # the last job asked for (the same again is not redone)
        # An apply that failed (set by the worker): asked again once at CONNECTED (tunnel_changed),
        # so a resolver that was not ready at route-delay's tunnel-up still gets the pushed DNS.
        self._failed: tuple | None = None

    def before_privilege_drop(self, path: str = RESOLV_CONF) -> None:
        """Before `user`/`group` drop root (host/privileges.py), prepare what needs root later:
        with systemd-resolved, a helper that keeps root for resolvectl (resolvectl_helper.py:
        resolved takes link settings only from root or via polkit); otherwise the resolv.conf
        opened for writing now, so the pushed DNS is written and restored in place through it."""
        if self._make is not choose_backend:
            return
        if resolved_running():
            from .resolvectl_helper import Helper
            self._helper = helper = Helper()
            self._make = lambda: choose_backend(path, run=helper)
            return
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except OSError as e:
            log.warning("host DNS: cannot open %s before dropping privileges: %s", path, e.strerror)
            return
        self._make = lambda: choose_backend(path, fd)

    # ---------------------------------------------------------------- observer (on the pump)
    def attach(self, pump: "Pump", counters: "Callable[[], ClientCounters]") -> None:
        if self._threaded:
            self._worker = threading.Thread(target=self._work, name="host-dns", daemon=True)
            self._worker.start()
        self._submit(("start",))

    def tunnel_changed(self, state: "TunnelState") -> None:
        # From tunnel-up (dns_up), as 2.6's up script sets DNS: with route-delay before the routes,
        # and their arrival (CONNECTED, the same push) changes nothing here.
        if state.dns_up and state.pushed is not None:
            job: tuple = ("apply", from_pushed(state.pushed, self.redirect_gateway, self.redirect_private,
                                           self.redirect_lines), state.tun_name or "tun0")
        else:
            job = ("restore",)
        if job == self._last:
            if state.up and job[0] == "apply" and self._failed == job:
                self._failed = None                     # once: a resolver failing again is not hammered
                log.info("host DNS: applying again at CONNECTED (it failed at tunnel-up)")
                self._submit(job)
            return
        self._last, self._failed = job, None
        self._submit(job)

    def close(self) -> None:
        self._submit(("restore",))
        if self._worker is not None:
            self._jobs.put(None)
            self._worker.join(self.CLOSE_WAIT)
            if self._worker.is_alive():
                log.error("host DNS: the resolver did not answer within %.0f s; it may still hold the VPN's DNS",
                          self.CLOSE_WAIT)
            self._worker = None
        if self._helper is not None:
            self._helper.close()
            self._helper = None

    # ---------------------------------------------------------------- the work (worker thread)
    def _submit(self, job: tuple) -> None:
        if self._worker is not None:
            self._jobs.put(job)
        else:
            self._do(job)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            self._do(job)

    def _do(self, job: tuple) -> None:
        try:
            if job[0] == "start":
                self.backend = self._make()
                return
            if self.backend is None:
                return
            if job[0] == "apply":
                dns: DnsSettings = job[1]
                if dns.skipped:
                    log.warning("host DNS: %s pushed on a port other than 53: not used (the host's resolver "
                                "asks port 53 only)", ", ".join(dns.skipped))
                if dns.refused:
                    log.warning("host DNS: pushed DNS server %s: not a server through the tunnel, not used",
                                ", ".join(dns.refused))
                if dns.empty:
                    log.info("host DNS: the server pushed no DNS; the host's resolver is unchanged")
                    self.backend.restore()
                    return
                self.backend.apply(dns, job[2])
            else:
                self.backend.restore()
        except Exception as e:  # noqa: BLE001 - DNS must not stop the tunnel
            self.errors += 1
            if job[0] == "apply":
                self._failed = job
            what = {"start": "choosing the resolver", "apply": "applying"}.get(job[0], "restoring")
            log.error("host DNS: %s failed: %s (the tunnel is not affected)", what, e)
