"""tls-verify and tls-crypt-v2-verify against Debian's OpenVPN 2.6, in namespaces. The same
server config is run by OpenVPN and by us, with a command that appends its arguments and the
variables it is given (X509_*, tls_*, common_name, untrusted_ip, script_type; metadata_type and
the metadata) to a file and refuses one peer; Debian's client connects with an accepted and with a
refused certificate (or tls-crypt-v2 key). Both servers must give the same verdicts, and the files
must hold the same calls, arguments and variables (of a peer's first attempt); a client our
server refuses restarts at once. Then our client
with tls-verify against Debian's server, compared with Debian's client doing the same.
"""
from __future__ import annotations

import base64
import subprocess

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab, until
from lab.tools import OPENVPN

SERVER_TUN = "198.19.0.1"
KEEP = r"^(X509_|tls_id_|tls_serial_|tls_digest_|common_name=|untrusted_ip=|script_type=|metadata_type=)"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1", "client2"], tmp=tmp_path_factory.mktemp("tlsvlab")) as lab:
        for who in ("alice", "mallory"):
            meta = base64.b64encode(who.encode()).decode()
            subprocess.run([OPENVPN, "--tls-crypt-v2", str(lab.pki.dir / "v2server.key"), "--genkey",
                            "tls-crypt-v2-client", str(lab.tmp / f"{who}.v2.key"), meta], check=True,
                           capture_output=True)
        yield lab


def _recorder(lab, tag: str, refuse: str) -> tuple[str, object]:
    """`peer_cert` (tls-export-cert) is recorded as its file name's start, its mode and its
    content's digest: the same certificate exported the same way by both."""
    out = lab.tmp / f"calls-{tag}.log"
    # Each call's block whole or not at all (a temp file, then mv), as the test polls for it; named
    # by the time, so they sort in call order.
    script = lab.write(f"verify-{tag}.sh", "#!/bin/sh\n"
                       f'{{ echo "CALL $*"; env | grep -E \'{KEEP}\' | sort; '
                       f'[ -n "$metadata_file" ] && echo "metadata=$(cat "$metadata_file")"; '
                       f'[ -n "$peer_cert" ] && echo "peer_cert=$(basename "$peer_cert" | cut -c1-12) '
                       f'$(stat -c %a "$peer_cert") $(sha256sum < "$peer_cert" | cut -c1-16)"; }} > {out}.tmp.$$ '
                       f"; mv {out}.tmp.$$ {out}.$(date +%s%N).$$.call\n"
                       f"{refuse}\nexit 0\n")
    script.chmod(0o755)
    return str(script), out


def _attempts(path) -> list[list[str]]:
    """The recorded calls, in order, one block each (its `CALL` line and variables)."""
    return [f.read_text().splitlines() for f in sorted(path.parent.glob(path.name + ".*.call"))]


def _server(lab, procs, which: str, cfg: str, name: str):
    p = lab.openvpn(lab.srv, cfg, name) if which == "openvpn" else \
        lab.ours(lab.srv, cfg, name, pattern=r"listening on UDP")
    procs.append(p)
    return p


UP = "Initialization Sequence Completed"
RESTARTED = "SIGUSR1[soft,tls-error]"


def _client_verdict(lab, procs, prof: str, name: str, out, calls: int) -> tuple[bool, bool]:
    """Debian's client with `prof`: (its tunnel answers a ping, it restarted on a TLS error within
    4 s of its calls -- hand-window is the default 60 s)."""
    cli = lab.openvpn(lab.cli, prof, name, wait=0)
    procs.append(cli)
    assert until(lambda: len(_attempts(out)) >= calls, 15), (name, _attempts(out), cli.log()[-2000:])
    cli.wait_for(f"{UP}|{RESTARTED.replace('[', '.')}", 4)
    log = cli.log()
    got = UP in log and lab.ping(lab.cli, SERVER_TUN, count=1, timeout=5) == 1
    cli.stop(5)
    return got, RESTARTED in log


def _server_run(lab, procs, which: str) -> tuple[list, tuple, tuple]:
    script, out = _recorder(lab, f"srv-{which}", 'case "$2" in *CN=client2*) exit 1;; esac')
    srv = _server(lab, procs, which, server_config(lab.pki, extra=f"script-security 2\ntls-verify {script}\n"),
                  f"tvsrv-{which}")
    ok = _client_verdict(lab, procs, client_profile(lab.pki, client="client1"), f"tvc1-{which}", out, 2)
    n = len(_attempts(out))
    refused = _client_verdict(lab, procs, client_profile(lab.pki, client="client2"), f"tvc2-{which}", out, n + 2)
    srv.stop(10)
    blocks = _attempts(out)
    return blocks[:2] + blocks[n:n + 2], ok, refused


def test_server_tls_verify_same_calls_and_verdicts(lab, procs):
    theirs, t_ok, t_refused = _server_run(lab, procs, "openvpn")
    ours, o_ok, o_refused = _server_run(lab, procs, "ours")
    assert (t_ok[0], t_refused[0]) == (True, False) and (o_ok[0], o_refused[0]) == (True, False)
    # The refused client hears it from ours at once (tls.REFUSAL_NOTICE) and restarts; OpenVPN's
    # UDP server never sends its alert, so there it waits out hand-window (60 s).
    assert o_refused[1] and not o_ok[1], "the refused client did not restart within 4 s"
    assert [b[0] for b in theirs] == ["CALL 1 CN=Lab CA", "CALL 0 CN=client1", "CALL 1 CN=Lab CA", "CALL 0 CN=client2"]
    assert ours == theirs, f"OpenVPN:\n{theirs}\nours:\n{ours}"


def _client_run(lab, procs, which: str) -> list:
    script, out = _recorder(lab, f"cli-{which}", "")
    export = lab.tmp / f"export-{which}"
    export.mkdir()
    srv = _server(lab, procs, "openvpn", server_config(lab.pki), f"tvcsrv-{which}")
    prof = client_profile(lab.pki, client="client1",
                          extra=f"script-security 2\ntls-verify {script}\ntls-export-cert {export}\n")
    cli = lab.openvpn(lab.cli, prof, f"tvcc-{which}") if which == "openvpn" else lab.ours(lab.cli, prof, f"tvcc-{which}")
    procs.append(cli)
    assert lab.wait_ping(lab.cli, SERVER_TUN, 10), cli.log()[-2000:]
    cli.stop(5)
    srv.stop(10)
    assert not list(export.iterdir()), f"{which}: exported certificates left behind"
    return _attempts(out)[:2]


def test_our_client_runs_tls_verify_as_openvpn_s(lab, procs):
    theirs = _client_run(lab, procs, "openvpn")
    ours = _client_run(lab, procs, "ours")
    assert [b[0] for b in theirs] == ["CALL 1 CN=Lab CA", "CALL 0 CN=server"], theirs
    assert all(b[-1].startswith("peer_cert=openvpn_pef_ 600 ") for b in theirs), theirs     # tls-export-cert
    assert ours == theirs, f"OpenVPN:\n{theirs}\nours:\n{ours}"


def _v2_run(lab, procs, which: str) -> tuple[list, list]:
    script, out = _recorder(lab, f"v2-{which}", 'grep -qx alice "$metadata_file" || exit 1')
    cfg = server_config(lab.pki, protection="tls-crypt-v2", extra=f"script-security 2\ntls-crypt-v2-verify {script}\n")
    srv = _server(lab, procs, which, cfg, f"v2srv-{which}")
    verdicts, calls = [], []
    for who in ("alice", "mallory"):
        n = len(_attempts(out))
        prof = client_profile(lab.pki, client="client1", protection="none",
                              extra=f"tls-crypt-v2 {lab.tmp / f'{who}.v2.key'}\n")
        verdicts.append(_client_verdict(lab, procs, prof, f"v2c-{who}-{which}", out, n + 1)[0])
        calls.append(_attempts(out)[n])
    srv.stop(10)
    return verdicts, calls


def test_tls_crypt_v2_verify_same_calls_and_verdicts(lab, procs):
    t_verdicts, theirs = _v2_run(lab, procs, "openvpn")
    o_verdicts, ours = _v2_run(lab, procs, "ours")
    assert t_verdicts == [True, False] and o_verdicts == [True, False], (t_verdicts, o_verdicts)
    assert theirs[0][1:] == ["metadata_type=0", "script_type=tls-crypt-v2-verify", "metadata=alice"], theirs
    assert ours == theirs, f"OpenVPN:\n{theirs}\nours:\n{ours}"
