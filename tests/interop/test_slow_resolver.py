"""A remote name whose DNS server does not answer (the case of a reconnect whose resolver sits
behind the dead tunnel): our client resolves it in a worker thread, so while getaddrinfo waits
out its timeouts the management interface answers at once and SIGTERM ends the run at once.
Before, the lookup ran on the loop: ~6 s per attempt (here: timeout 3, attempts 2) of a frozen
interface. The client's namespace gets its own resolv.conf (ip netns exec bind-mounts
/etc/netns/NAME/resolv.conf), pointing at an address nothing answers on; the process's exit must
not wait for the lookup either (an executor's worker thread is joined at exit: it did)."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from lab.configs import client_profile
from lab.netns import Lab
from tests.interop.test_ops_vs_openvpn import Mgmt


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("slowdns")) as lab:
        d = Path("/etc/netns") / lab.cli.name          # /etc/netns stays, as in test_host_dns (others share it)
        d.mkdir(parents=True, exist_ok=True)
        (d / "resolv.conf").write_text("nameserver 198.18.0.77\noptions timeout:3 attempts:2\n")
        # Silent, not unreachable: a neighbour entry sends its queries onto the link, where nobody
        # takes them (without it ARP fails after ~3 s and the lookup ends early with an error).
        lab.cli.run("ip neigh replace 198.18.0.77 lladdr 02:00:00:00:00:77 nud permanent dev "
                    "$(ip -o route get 198.18.0.77 | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p')")
        try:
            yield lab
        finally:
            shutil.rmtree(d, ignore_errors=True)


def test_a_silent_resolver_freezes_neither_the_management_interface_nor_sigterm(lab, procs):
    sock = lab.tmp / "slow.sock"
    prof = client_profile(lab.pki, "udp", remotes=[("vpn.slow.example", 1194, "udp")],
                          extra=f"management {sock} unix\n")
    cli = lab.ours(lab.cli, prof, "slow-cli", wait=0)
    procs.append(cli)
    m = Mgmt(str(sock), cli)
    time.sleep(1.0)                                   # the lookup is under way by now
    t0 = time.monotonic()
    assert m.cmd("pid", wait=2)[0].startswith("SUCCESS: pid=")
    assert time.monotonic() - t0 < 1.0, "the management interface waited for the lookup"
    assert any(",RESOLVE," in x for x in m.cmd("state all", wait=2)), cli.log()[-2000:]
    t0 = time.monotonic()
    m.cmd("signal SIGTERM", wait=2)
    assert cli.exit_within(3) is not None, "SIGTERM waited for the lookup"
    assert time.monotonic() - t0 < 3.0
    m.close()
