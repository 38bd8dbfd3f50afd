"""Username and password lengths against Debian's OpenVPN 2.6 server, in namespaces
(keymethod.KEY_METHOD_READ): a client that sends a username its server cannot read (3,000 bytes:
past the 2048-byte read of the key-method message) is refused by Debian's server and by ours, the
same config, with 2.6's words (`AUTH_FAILED,Username or password is too long. Maximum length is
128 bytes`), a server without password checks too. Ours read the whole TLS record and let that
client in. One that fits (1,500 bytes) gets in with both.

The client is our engine's (lab/loadgen.py, one session) with its own limit off: Debian's client
cannot send such a message ("Key Method #2 write failed") and ours refuses to.
"""
from __future__ import annotations

import json

import pytest

from appliance.openvpn.keymethod import USER_PASS_TOO_LONG
from lab.attacks import run_py
from lab.configs import client_profile, server_config
from lab.netns import Lab

CLIENT = """
import json, sys
from appliance.openvpn import control, events as ev
control.KEY_METHOD_READ = 1 << 20          # our client's own limit off: what a hostile client sends
from lab.loadgen import LoadGen
g = LoadGen(sys.argv[1], username="u" * int(sys.argv[2]), password="secret", connect_timeout=20)
seen = []
after = g._after
def noting(c, now):
    seen.extend(e.message for e in c.s.events if isinstance(e, ev.AuthFailed))
    after(c, now)
g._after = noting
out = g.run(1, 30)
print(json.dumps({"auth_failed": seen, "connected": out["connected"]}))
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("userpasslen")) as lab:
        yield lab


@pytest.mark.parametrize("server", ["openvpn", "ours"])
def test_a_username_past_the_key_method_read_gets_openvpns_auth_failed(lab, procs, server):
    cfg = server_config(lab.pki)
    procs.append(lab.udp_server(server, cfg, f"upsrv-{len(lab.procs)}"))
    prof = lab.write(f"up-{server}.ovpn", client_profile(lab.pki, "udp", extra="auth-user-pass\n"))
    long = json.loads(run_py(lab.cli, CLIENT, prof, 3000, timeout=60).splitlines()[-1])
    assert long == {"auth_failed": [USER_PASS_TOO_LONG], "connected": 0}, procs[0].log()[-2000:]
    fits = json.loads(run_py(lab.cli, CLIENT, prof, 1500, timeout=60).splitlines()[-1])
    assert fits == {"auth_failed": [], "connected": 1}, procs[0].log()[-2000:]
