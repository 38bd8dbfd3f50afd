"""systemd-resolved per link, as update-systemd-resolved does: the TUN link gets the pushed
servers and domains; everything is dropped again with `resolvectl revert` (and resolved forgets
a link that goes away anyway).

Through `resolvectl` (the documented front end of resolved's D-Bus API; it exists wherever
resolved runs) rather than our own D-Bus client: no new dependency, and the command lines are
what an administrator would type, so the log says exactly what was done.

Domains: search domains (DOMAIN, DOMAIN-SEARCH, `dns search-domains`) are search + routing
domains of the link; DOMAIN-ROUTE ones routing only (`~name`); with redirect-gateway the link also
gets `~.` and is the default route for names, as update-systemd-resolved does. Without
redirect-gateway and with domains, only those domains go to the VPN's servers (default-route no);
with no domain at all the servers would be unused otherwise, so the link stays a default route.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
from typing import Callable, Sequence

from .dns_settings import DnsSettings

log = logging.getLogger("vpn-appliance")

RESOLVED_RUN_DIR = "/run/systemd/resolve"
TIMEOUT = 5.0

Runner = Callable[[Sequence[str]], int]


def run_command(argv: Sequence[str]) -> int:
    """Run one resolvectl command line (bounded in time); its exit status, 127 if it cannot run."""
    try:
        r = subprocess.run(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        log.warning("host DNS: %s: %s", " ".join(argv), e)
        return 127
    if r.returncode != 0:
        log.warning("host DNS: %s: exit %d: %s", " ".join(argv), r.returncode,
                    r.stderr.decode("utf-8", "replace").strip()[:200])
    return r.returncode


def resolved_running(run: Runner = run_command, run_dir: str = RESOLVED_RUN_DIR) -> bool:
    """systemd-resolved is the host's resolver: its runtime directory exists, resolvectl is
    installed and answers (`resolvectl status` fails when the service is not on the bus)."""
    if not os.path.isdir(run_dir) or shutil.which("resolvectl") is None:
        return False
    return run(["resolvectl", "status"]) == 0


def commands(dns: DnsSettings, link: str) -> list[list[str]]:
    """The resolvectl command lines that give `link` the pushed settings."""
    out: list[list[str]] = []
    if dns.servers:
        out.append(["resolvectl", "dns", link, *dns.servers])
    domains = list(dns.search) + [f"~{d}" for d in dns.routing] + (["~."] if dns.default_route else [])
    if domains:
        out.append(["resolvectl", "domain", link, *domains])
    default = dns.default_route or not (dns.search or dns.routing)
    out.append(["resolvectl", "default-route", link, "yes" if default else "no"])
    return out


class Resolved:
    def __init__(self, run: Runner = run_command) -> None:
        self.run = run
        self.link: str | None = None

    def apply(self, dns: DnsSettings, link: str) -> None:
        self.restore()
        self.link = link
        for argv in commands(dns, link):
            if self.run(argv) != 0:
                raise RuntimeError(f"{' '.join(argv)} failed")
        log.info("host DNS: systemd-resolved link %s uses %s%s", link, ", ".join(dns.servers) or "no servers",
                 f" (domains {' '.join(dns.search + dns.routing)})" if dns.search or dns.routing else "")

    def restore(self) -> None:
        link, self.link = self.link, None
        if link is not None:
            self.run(["resolvectl", "revert", link])
            log.info("host DNS: systemd-resolved link %s reverted", link)
