"""cfg38's start-up checks, each config run by Debian's OpenVPN 2.6 and ours in the lab's server
namespace: a TLS server's `dh` (none, a 2048-bit group: both start; no line, a missing file, a
certificate, 1024 bits: 2.6 exits at start, ours refuses the config at the `dh` line), a UDP port
another server holds (whichever came first, the second fails at start naming `port`: ours set
SO_REUSEADDR on UDP and a second of ours shared the port), and a `dev` name over 15 characters
(both cut it to 15, ours says so)."""
from __future__ import annotations

import re

import pytest

from appliance.openvpn.config import ConfigError, load_config
from lab.configs import server_config
from lab.netns import Lab
from tests.unit.test_startup_checks26 import DH1024, FFDHE2048

UP = "Initialization Sequence Completed"
OURS_UP = r"listening on UDP"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        lab.write("ff.pem", FFDHE2048)
        lab.write("dh1024.pem", DH1024)
        yield lab


def _with_dh(lab: Lab, dh: str | None, port: int = 1194, extra: str = "") -> str:
    text = server_config(lab.pki, "udp", port=port, extra=extra)
    return text.replace("dh none\n", "" if dh is None else f"dh {dh}\n")


# (dh line or None, whether 2.6 starts)
DH_CASES = [("none", True), ("{tmp}/ff.pem", True), (None, False), ("{tmp}/missing.pem", False),
            ("{server_cert}", False), ("{tmp}/dh1024.pem", False)]


@pytest.mark.parametrize("dh,starts", DH_CASES, ids=["none", "ffdhe2048", "no line", "missing", "a cert", "1024"])
def test_dh_as_2_6_takes_or_refuses_it(lab, procs, dh, starts):
    if dh is not None:
        dh = dh.format(tmp=lab.tmp, server_cert=lab.pki.server_cert)
    text = _with_dh(lab, dh)
    theirs = lab.openvpn(lab.srv, text, "dh-openvpn", wait=0)
    procs.append(theirs)
    if starts:
        assert theirs.wait_for(UP, 60), theirs.log()[-2000:]
        theirs.stop_promptly(8)
    else:
        assert theirs.exit_within(60) not in (None, 0), theirs.log()[-2000:]
    path = lab.write("dh-ours.conf", text)
    if starts:
        assert load_config(str(path)).role == "server"
    else:
        with pytest.raises(ConfigError) as e:
            load_config(str(path))
        line = f":{text.splitlines().index(f'dh {dh}') + 1}" if dh is not None else ""
        assert str(e.value).startswith(f"{path}{line}: dh: "), str(e.value)


@pytest.mark.parametrize("first", ["openvpn", "ours"])
def test_a_second_udp_server_on_a_taken_port_fails_at_start_as_2_6(lab, procs, first):
    text = _with_dh(lab, "none", port=1195)
    one = lab.udp_server(first, text, f"port-first-{first}")
    procs.append(one)
    for second in ("openvpn", "ours"):
        start = lab.openvpn if second == "openvpn" else lab.ours
        other = text.replace("server 198.19.0.0", "server 198.19.7.0")
        two = start(lab.srv, other, f"port-second-{first}-{second}", wait=0)
        procs.append(two)
        status = two.exit_within(60)
        assert status not in (None, 0), f"{second} started beside {first} on the same UDP port:\n{two.log()[-2000:]}"
        if second == "ours":
            assert re.search(r"\.ovpn:1: port: cannot listen on UDP 0\.0\.0\.0:1195: Address already in use",
                             two.log()), two.log()[-2000:]
        else:
            assert "Address already in use" in two.log(), two.log()[-2000:]
    assert one.alive(), one.log()[-2000:]


def test_a_long_dev_name_is_cut_by_both_and_ours_says_so(lab, procs):
    theirs = lab.openvpn(lab.srv, _with_dh(lab, "none", port=1196).replace("dev tun\n", "dev tunA-bcdefghijklmnop\n"),
                         "dev-openvpn")
    procs.append(theirs)
    ours = lab.ours(lab.srv, _with_dh(lab, "none", port=1197).replace("dev tun\n", "dev tunB-bcdefghijklmnop\n")
                    .replace("server 198.19.0.0", "server 198.19.8.0"), "dev-ours", pattern=OURS_UP)
    procs.append(ours)
    links = lab.srv.run("ip -br link").stdout
    assert "tunA-bcdefghijk " in links and "tunB-bcdefghijk " in links, links
    assert re.search(r"\.ovpn:3: dev: 'tunB-bcdefghijklmnop' is longer than the 15 characters .* the device is "
                     r"tunB-bcdefghijk \(as with OpenVPN 2\.6\)", ours.log()), ours.log()[-2000:]
