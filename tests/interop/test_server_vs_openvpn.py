"""Our server (`vpn-appliance run server.conf`, a plain OpenVPN server config) against Debian's
OpenVPN 2.6 clients, and against our own client, in namespaces.

The server config text is the very one the OpenVPN-server tests use: a config written for
OpenVPN 2.6 works unchanged.
"""
from __future__ import annotations

import os
import pwd
import shutil
import re
import struct
import sys
import tempfile
import time
from pathlib import Path

import pytest

from lab.configs import client_profile, server_config
from lab.netns import SRV_IP, TUN_SERVER_IP, Lab, wait_for_text
from lab.tools import OUR_BIN

CLIENTS = [f"client{i}" for i in range(1, 10)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=CLIENTS, tmp=tmp_path_factory.mktemp("srvlab")) as lab:
        yield lab


def _stop_all(started: list) -> None:
    """Stop a test's processes, newest first, promptly (Proc.stop_promptly): our server without
    its 2 s wait for the RESTART's acknowledgements of clients stopped already, Debian's clients
    without their explicit-exit-notify second."""
    for p in reversed(started):
        p.stop_promptly(8)
    started.clear()


def _all_up(lab, procs, starts: list) -> list:
    """Debian's clients started together, then each waited for (Lab.START_WAIT, as lab.openvpn):
    `starts` holds (namespace, profile, name). One after the other, each client's start-up was
    its own second or two of the many-client tests (helper trim44a)."""
    started = []
    for ns, prof, name in starts:
        p = lab.openvpn(ns, prof, name, wait=0)
        procs.append(p)
        started.append(p)
    for p in started:
        if not p.wait_for("Initialization Sequence Completed", lab.START_WAIT):
            raise lab._not_up(p, f"OpenVPN {p.log_path.name} did not come up")
    return started


@pytest.fixture
def procs(lab):
    started = []
    yield started
    _stop_all(started)


def start_our_server(lab, procs, extra="", env=None, **kw):
    srv = lab.ours(lab.srv, server_config(lab.pki, extra=extra, **kw), f"oursrv-{len(lab.procs)}",
                   pattern=r"listening on (UDP|TCP)", env=env)
    procs.append(srv)
    return srv


def tun_ip(ns) -> str:
    m = re.search(r"inet (\S+)/", ns.run("ip -4 -o addr show dev tun0", check=False).stdout)
    assert m, "no tunnel address"
    return m.group(1)


def traffic_both_ways(lab, client_ns, nbytes=500_000):
    assert lab.ping(client_ns, TUN_SERVER_IP, 3) == 3, "client → server ping failed"
    cip = tun_ip(client_ns)
    assert lab.ping(lab.srv, cip, 2) == 2, "server → client ping failed"
    assert lab.tcp_transfer(lab.srv, TUN_SERVER_IP, client_ns, nbytes) > 0, "TCP client→server failed"
    assert lab.tcp_transfer(lab.srv, TUN_SERVER_IP, client_ns, nbytes, reverse=True) > 0, "TCP server→client failed"


# Each cipher and each transport against Debian's client, not every pair (helper trim43: the six
# pairs were one path per cipher and one per transport; the cipher's seal is the same C code
# whatever carries it). In memory: every cipher with every protection
# (tests/engine/test_memory_link.py), the C seal equal to Python's for each AEAD
# (tests/unit/test_native_aead.py); AES-256-GCM over UDP is what most files here negotiate.
CIPHER_CASES = [("udp", "AES-128-GCM"), ("tcp", "AES-256-GCM"), ("udp", "CHACHA20-POLY1305")]
PURE_PYTHON_CASES = [("udp", "AES-256-GCM"), ("tcp", "CHACHA20-POLY1305")]


@pytest.mark.parametrize("proto, cipher", CIPHER_CASES)
def test_openvpn_client_ciphers_transports(lab, procs, proto, cipher):
    srv = start_our_server(lab, procs, proto=proto, cipher=cipher)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, proto, cipher), f"ovpncli-{len(lab.procs)}")
    procs.append(cli)
    traffic_both_ways(lab, lab.cli)
    assert f"Data Channel: cipher '{cipher}'" in cli.log()
    assert re.search(rf"connected, address 198\.19\.0\.\d+, cipher {cipher}", srv.log())
    assert "data path: compiled" in srv.log(), srv.log()[-2000:]


@pytest.mark.parametrize("proto, cipher", PURE_PYTHON_CASES)
def test_pure_python_data_path(lab, procs, proto, cipher):
    """The compiled data path's pure-Python twins (appliance/native, VPN_APPLIANCE_PURE_PYTHON=1),
    serving Debian's client: what runs where the C modules are not built."""
    srv = start_our_server(lab, procs, proto=proto, cipher=cipher, env={"VPN_APPLIANCE_PURE_PYTHON": "1"})
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, proto, cipher), f"ovpncli-{len(lab.procs)}")
    procs.append(cli)
    traffic_both_ways(lab, lab.cli, 2_000_000)
    assert "data path: pure Python (VPN_APPLIANCE_PURE_PYTHON is set)" in srv.log(), srv.log()[-2000:]


@pytest.mark.parametrize("protection", ["tls-auth", "tls-crypt-v2", "none"])
def test_openvpn_client_protections(lab, procs, protection):
    start_our_server(lab, procs, protection=protection)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", protection=protection), f"ovpncli-{len(lab.procs)}")
    procs.append(cli)
    traffic_both_ways(lab, lab.cli)


# One case per transport (helper trim43; five before): every cipher with every protection, our
# client's engine against our server's, is tests/engine/test_memory_link.py's
# test_every_cipher_and_protection, and each end against Debian's OpenVPN is in this file and
# test_client_vs_openvpn.py.
@pytest.mark.parametrize("proto,cipher,protection", [
    ("udp", "CHACHA20-POLY1305", "tls-crypt-v2"), ("tcp", "AES-256-GCM", "tls-crypt"),
])
def test_our_client_against_our_server(lab, procs, proto, cipher, protection):
    start_our_server(lab, procs, proto=proto, cipher=cipher, protection=protection)
    cli = lab.ours(lab.cli, client_profile(lab.pki, proto, cipher, protection), f"ourcli-{len(lab.procs)}")
    procs.append(cli)
    traffic_both_ways(lab, lab.cli)


def test_many_clients_distinct_addresses_c2c_and_release(lab, procs):
    # A pool of exactly 8 addresses: a 9th client can only get in once one leaves.
    srv = start_our_server(lab, procs, extra="client-to-client\nifconfig-pool 198.19.0.2 198.19.0.9 255.255.255.0\n",
                           nopool=True)
    spaces = _client_spaces(lab)
    clients = _all_up(lab, procs, [
        (ns, client_profile(lab.pki, "udp", client=CLIENTS[i], remotes=[(f"198.18.{i + 2}.1", 1194, "udp")],
                            extra="explicit-exit-notify 1\n"), f"many-{i}")
        for i, ns in enumerate(spaces[:8])])
    addrs = [tun_ip(ns) for ns in spaces[:8]]
    assert len(set(addrs)) == 8, addrs
    for i, ns in enumerate(spaces[:8]):
        assert lab.ping(ns, TUN_SERVER_IP, 1) == 1, f"client {i} cannot reach the server"
        assert lab.ping(ns, addrs[(i + 1) % 8], 1) == 1, f"client {i} cannot reach client {(i + 1) % 8} (c2c)"
    # Client 0 leaves (explicit exit notification); its address goes back to the pool.
    freed = addrs[0]
    clients[0].stop(8)
    assert srv.wait_for(r"client1/\S+: disconnected", 10), srv.log()[-2000:]
    prof = client_profile(lab.pki, "udp", client=CLIENTS[8], remotes=[("198.18.10.1", 1194, "udp")])
    p9 = lab.openvpn(spaces[8], prof, "many-9")
    procs.append(p9)
    assert tun_ip(spaces[8]) == freed
    for i, ns in enumerate(spaces[1:8], 1):
        assert lab.ping(ns, TUN_SERVER_IP, 1) == 1, f"client {i} lost its tunnel when another left"
    assert lab.ping(spaces[8], addrs[1], 1) == 1


def _client_spaces(lab):
    spaces = getattr(lab, "_client_spaces", None)
    if spaces is None:
        spaces = lab._client_spaces = [lab.add_client_ns(i) for i in range(1, 10)]
    return spaces


def _ovpn_client(lab, procs, ns_index: int, cert: str, name: str, wait: bool = True):
    p = lab.openvpn(*_ovpn_start(lab, ns_index, cert, name), wait=20 if wait else 0)
    procs.append(p)
    return p


def _ovpn_start(lab, ns_index: int, cert: str, name: str) -> tuple:
    """(namespace, profile, name) of a UDP client in the `ns_index`-th client namespace."""
    prof = client_profile(lab.pki, "udp", client=cert, remotes=[(f"198.18.{ns_index + 2}.1", 1194, "udp")])
    return _client_spaces(lab)[ns_index], prof, name


def test_duplicate_cn_and_max_clients(lab, procs):
    spaces = _client_spaces(lab)
    # Without duplicate-cn (OpenVPN's default) a second login with the same certificate replaces the
    # first; the newcomer works and the old session is gone.
    srv = start_our_server(lab, procs)
    _ovpn_client(lab, procs, 0, CLIENTS[0], "dup-a")
    first_ip = tun_ip(spaces[0])
    assert lab.ping(spaces[0], TUN_SERVER_IP, 2) == 2
    _ovpn_client(lab, procs, 1, CLIENTS[0], "dup-b")
    assert srv.wait_for("another client connected with common name client1", 10), srv.log()[-2000:]
    assert lab.ping(spaces[1], TUN_SERVER_IP, 2) == 2, "the newer session must work"
    assert lab.ping(spaces[0], TUN_SERVER_IP, 2) == 0, "the replaced session must not carry traffic"
    assert lab.ping(lab.srv, first_ip, 1) == 0 or tun_ip(spaces[1]) == first_ip
    _stop_all(procs)

    # duplicate-cn: both logins live side by side with their own addresses.
    srv = start_our_server(lab, procs, extra="duplicate-cn\n")
    _all_up(lab, procs, [_ovpn_start(lab, 0, CLIENTS[0], "dupcn-a"), _ovpn_start(lab, 1, CLIENTS[0], "dupcn-b")])
    a, b = tun_ip(spaces[0]), tun_ip(spaces[1])
    assert a != b
    assert lab.ping(spaces[0], TUN_SERVER_IP, 2) == 2 and lab.ping(spaces[1], TUN_SERVER_IP, 2) == 2
    assert "another client connected" not in srv.log()
    _stop_all(procs)

    # max-clients 2: a third client is refused (and counted) while the first two keep working.
    srv = start_our_server(lab, procs, extra="max-clients 2\n")
    _all_up(lab, procs, [_ovpn_start(lab, 0, CLIENTS[0], "max-a"), _ovpn_start(lab, 1, CLIENTS[1], "max-b")])
    third = _ovpn_client(lab, procs, 2, CLIENTS[2], "max-c", wait=False)
    assert srv.wait_for(r"max-clients reached=\d+", 20), srv.log()[-2000:]
    assert "Initialization Sequence Completed" not in third.log()
    assert lab.ping(spaces[0], TUN_SERVER_IP, 2) == 2 and lab.ping(spaces[1], TUN_SERVER_IP, 2) == 2


def _send_udp_from(ns, payloads_hex: list[str], dst=(SRV_IP, 1194)):
    code = ("import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
            f"[s.sendto(bytes.fromhex(h),{dst!r}) for h in sys.stdin.read().split()]")
    import subprocess
    subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, "-c", code], input=" ".join(payloads_hex),
                   text=True, check=True, timeout=60)


def test_hostile_input_refused_while_clients_keep_working(lab, procs):
    srv = start_our_server(lab, procs)
    good = lab.openvpn(lab.cli, client_profile(lab.pki, "udp"), f"good-{len(lab.procs)}")
    procs.append(good)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2
    # 1. A client whose certificate is not signed by our CA.
    prof = client_profile(lab.pki, "udp").replace(str(lab.pki.clients["client1"][0]), str(lab.pki.rogue[0])) \
        .replace(str(lab.pki.clients["client1"][1]), str(lab.pki.rogue[1]))
    spaces = getattr(lab, "_client_spaces", None) or [lab.add_client_ns(i) for i in range(1, 10)]
    lab._client_spaces = spaces
    rogue = lab.openvpn(spaces[0], prof.replace(f"remote {SRV_IP}", "remote 198.18.2.1"), "rogue", wait=0)
    procs.append(rogue)
    # 2. A flood of bogus hard resets (random session ids, forged tls-crypt wrapping) and garbage,
    #    while the good client pings.
    import os
    bogus = []
    for i in range(3000):
        sid = os.urandom(8)
        body = struct.pack("!IIB", 0x0F000001 + i, int(time.time()), 0) + os.urandom(32)
        bogus.append((bytes([7 << 3]) + sid + body + os.urandom(20)).hex())
    bogus += [os.urandom(n).hex() for n in range(1, 200)]
    _send_udp_from(spaces[1] if len(spaces) > 1 else lab.cli, bogus, dst=("198.18.3.1", 1194))
    # 3. A replayed data packet: capture one from the good client and send it again. (Pings
    #    while tcpdump listens: it waited for a keepalive before, up to its 5 s, and without one
    #    no replay was sent -- helper trim44a.)
    cap = lab.cli.run(f"(sleep 0.5; ping -n -q -c 4 -i 0.3 -W 1 {TUN_SERVER_IP} >/dev/null) & "
                      "timeout 5 tcpdump -i any -c 1 -w - -U 'udp dst port 1194 and udp[8] & 0xf8 == 0x48' "
                      "2>/dev/null | od -An -tx1 -v; wait", check=False, timeout=20)
    raw = bytes.fromhex("".join(cap.stdout.split()))
    sent_replay = False
    if len(raw) > 40 + 28:
        # pcap: 24-byte global header, 16-byte record header, then the captured frame (linux cooked v1/v2)
        frame = raw[40:]
        udp_payload = _udp_payload(frame)
        if udp_payload:
            _send_udp_from(lab.cli, [udp_payload.hex()] * 5)
            sent_replay = True
    assert lab.ping(lab.cli, TUN_SERVER_IP, 5) == 5, "established client lost traffic during the attack"
    # Refused for its certificate (2.6's client itself says nothing until hand-window's 60 s):
    # the server's line, where an 8 s wait for the client's "up" that never came stood before.
    assert srv.wait_for(r"198\.18\.2\.2:\d+: disconnected: TLS error: .*certificate verify failed", 20), \
        srv.log()[-2000:]
    assert "Initialization Sequence Completed" not in rogue.log(), "client with a foreign CA got in"
    rogue.stop(5)
    srv.stop(8)
    log = srv.log()
    m = re.search(r"final drop counters: (.*)", log)
    assert m, log[-2000:]
    counts = dict(kv.rsplit("=", 1) for kv in m.group(1).split(", ") if "=" in kv)
    counts = {k: int(v) for k, v in counts.items()}
    assert sum(v for k, v in counts.items() if "reset" in k or "authentic" in k or "tag" in k or "short" in k
               or "unknown" in k or "malformed" in k or "packet" in k) >= 3000, counts
    print("drop counters:", counts)
    assert counts.get("handshake failed", 0) >= 1, counts
    assert sent_replay, "no data packet captured to replay"
    assert counts.get("replayed data packet", 0) >= 5, counts


def _udp_payload(frame: bytes) -> bytes | None:
    """Find the IPv4 header in a captured frame and return the UDP payload."""
    for off in (16, 20, 14, 0):
        ip = frame[off:]
        if len(ip) > 28 and ip[0] >> 4 == 4 and ip[9] == 17:
            ihl = (ip[0] & 15) * 4
            ulen = struct.unpack("!H", ip[ihl + 4:ihl + 6])[0]
            return ip[ihl + 8:ihl + ulen]
    return None


def test_tcp_client_sending_garbage_is_dropped_alone(lab, procs):
    start_our_server(lab, procs, proto="tcp")
    good = lab.openvpn(lab.cli, client_profile(lab.pki, "tcp"), f"tcpgood-{len(lab.procs)}")
    procs.append(good)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2
    code = ("import socket,os,time;s=socket.create_connection(('198.18.0.1',1194),timeout=5);"
            "s.sendall(b'\\x00\\x00garbage'+os.urandom(3000));time.sleep(1);s.close()")
    lab.cli.run(f"{sys.executable} -c \"{code}\"", check=False, timeout=20)
    # A client that connects and stalls.
    stall = lab.start(lab.cli, [sys.executable, "-c",
                                "import socket,time;s=socket.create_connection(('198.18.0.1',1194));time.sleep(30)"],
                      "stall")
    procs.append(stall)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 5) == 5, "good TCP client disturbed by a bad one"
    assert lab.tcp_transfer(lab.srv, TUN_SERVER_IP, lab.cli, 300_000) > 0


def test_many_tcp_clients_on_one_listening_socket(lab, procs):
    """Four OpenVPN clients over TCP at once, each on its own stream: distinct addresses, each
    reaches the server and (client-to-client) the next one, and one leaving disturbs no other."""
    spaces = _client_spaces(lab)
    srv = start_our_server(lab, procs, proto="tcp", extra="client-to-client\n")
    clients = _all_up(lab, procs, [
        (spaces[i], client_profile(lab.pki, "tcp", client=CLIENTS[i], remotes=[(f"198.18.{i + 2}.1", 1194, "tcp")]),
         f"tcpmany-{i}") for i in range(4)])
    addrs = [tun_ip(ns) for ns in spaces[:4]]
    assert len(set(addrs)) == 4, addrs
    for i, ns in enumerate(spaces[:4]):
        assert lab.ping(ns, TUN_SERVER_IP, 1) == 1, f"TCP client {i} cannot reach the server"
        assert lab.ping(ns, addrs[(i + 1) % 4], 1) == 1, f"TCP client {i} cannot reach client {(i + 1) % 4}"
    clients[0].stop(8)
    assert srv.wait_for(r"client1/tcp#\d+: disconnected", 10) or srv.wait_for("client1.*disconnected", 1), \
        srv.log()[-1500:]
    for i, ns in enumerate(spaces[1:4], 1):
        assert lab.ping(ns, TUN_SERVER_IP, 2) == 2, f"TCP client {i} lost its tunnel when another left"
    assert lab.tcp_transfer(lab.srv, TUN_SERVER_IP, spaces[2], 300_000) > 0


def test_a_cbc_only_client_gets_cbc_from_data_ciphers_and_not_from_the_fallback(lab, procs):
    """A client that offers only AES-256-CBC (IV_CIPHERS): a server whose data-ciphers lists it
    settles on it (legacy CBC + HMAC data channel, both ways); one with only `data-ciphers-fallback
    AES-256-CBC` refuses it, as 2.6.14 does (multi.c: the fallback is for a client naming no
    cipher; compat47 -- this test, from before, still expected the fallback: review47d)."""
    srv = start_our_server(lab, procs, extra="data-ciphers AES-256-GCM:AES-256-CBC\n")
    prof = client_profile(lab.pki, "udp", extra="data-ciphers AES-256-CBC\ndata-ciphers-fallback AES-256-CBC\n")
    cli = lab.openvpn(lab.cli, prof, f"cbc-{len(lab.procs)}")
    procs.append(cli)
    assert "cipher AES-256-CBC" in srv.log() and "Data Channel: cipher 'AES-256-CBC'" in cli.log()
    traffic_both_ways(lab, lab.cli, 300_000)
    _stop_all(procs)
    srv = start_our_server(lab, procs, extra="data-ciphers-fallback AES-256-CBC\n")
    cli = lab.openvpn(lab.cli, prof, f"cbc-refused-{len(lab.procs)}", wait=0)
    procs.append(cli)
    assert srv.wait_for("No common cipher between server and client", 15), srv.log()[-1500:]
    assert cli.wait_for("AUTH_FAILED,Data channel cipher negotiation failed", 15), cli.log()[-1500:]
    assert "Initialization Sequence Completed" not in cli.log()


def test_client_config_dir_and_password_file(lab, procs):
    """ccd: a fixed address (ifconfig-push) and a site behind the client (iroute); passdb users."""
    import subprocess
    ccd = lab.tmp / "ccd"
    ccd.mkdir(exist_ok=True)
    (ccd / "client1").write_text("ifconfig-push 198.19.0.77 255.255.255.0\niroute 198.18.77.0 255.255.255.0\n")
    h = subprocess.run([lab_bin(), "passwd", "alice"], input="wonderland\n", capture_output=True, text=True,
                       check=True).stdout.strip()
    (lab.tmp / "users.db").write_text(h + "\n")
    extra = (f"client-config-dir {ccd}\nauth-user-pass-verify {lab.tmp / 'users.db'} passdb\n"
             f"route 198.18.77.0 255.255.255.0\n")
    srv = start_our_server(lab, procs, extra=extra)
    (lab.tmp / "alice.pass").write_text("alice\nwonderland\n")
    (lab.tmp / "bad.pass").write_text("alice\nqueen\n")
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp", extra=f"auth-user-pass {lab.tmp / 'alice.pass'}\n"),
                      f"ccd-{len(lab.procs)}")
    procs.append(cli)
    assert tun_ip(lab.cli) == "198.19.0.77"
    # The site behind client1 (198.18.77.1 on its loopback) is reached from the server via the iroute.
    lab.cli.run("ip addr add 198.18.77.1/32 dev lo")
    assert lab.ping(lab.srv, "198.18.77.1", 2) == 2, srv.log()[-1500:]
    assert "user alice" in srv.log()
    spaces = getattr(lab, "_client_spaces", None) or [lab.add_client_ns(i) for i in range(1, 10)]
    lab._client_spaces = spaces
    bad = lab.openvpn(spaces[2], client_profile(lab.pki, "udp", client="client3", remotes=[("198.18.4.1", 1194, "udp")],
                                                extra=f"auth-user-pass {lab.tmp / 'bad.pass'}\n"), "badpass", wait=0)
    procs.append(bad)
    assert bad.wait_for("AUTH_FAILED", 15), bad.log()[-1500:]
    assert not bad.wait_for("Initialization Sequence Completed", 1)


def test_openvpn_client_with_net30_topology(lab, procs):
    srv = start_our_server(lab, procs, topology="net30")
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp"), f"net30-{len(lab.procs)}")
    procs.append(cli)
    out = lab.cli.run("ip -4 -o addr show dev tun0").stdout
    m = re.search(r"inet ([\d.]+) peer ([\d.]+)/32", out)
    assert m, f"not a net30 point-to-point address: {out}"
    cip = m.group(1)
    assert (cip, m.group(2)) == ("198.19.0.6", "198.19.0.5"), "the first client's /30, as OpenVPN assigns it"
    assert lab.ping(lab.cli, "198.19.0.1", 2) == 2, srv.log()[-1500:]
    assert lab.ping(lab.srv, cip, 2) == 2
    assert lab.tcp_transfer(lab.srv, "198.19.0.1", lab.cli, 300_000) > 0


def test_verify_client_cert_none_with_password_file(lab, procs):
    """No client certificate at all: the username/password from the passdb is the only credential."""
    import subprocess
    h = subprocess.run([lab_bin(), "passwd", "bob"], input="builder\n", capture_output=True, text=True,
                       check=True).stdout.strip()
    (lab.tmp / "users-nocert.db").write_text(h + "\n")
    srv = start_our_server(lab, procs, extra=f"verify-client-cert none\n"
                                             f"auth-user-pass-verify {lab.tmp / 'users-nocert.db'} passdb\n")
    (lab.tmp / "bob.pass").write_text("bob\nbuilder\n")
    prof = client_profile(lab.pki, "udp", extra=f"auth-user-pass {lab.tmp / 'bob.pass'}\n")
    prof = "\n".join(line for line in prof.splitlines() if not line.startswith(("cert ", "key "))) + "\n"
    cli = lab.openvpn(lab.cli, prof, f"nocert-{len(lab.procs)}")
    procs.append(cli)
    traffic_both_ways(lab, lab.cli, 200_000)
    assert "user bob" in srv.log()
    # the same server still refuses a wrong password
    (lab.tmp / "bob-bad.pass").write_text("bob\nwrecker\n")
    bad_prof = prof.replace(str(lab.tmp / "bob.pass"), str(lab.tmp / "bob-bad.pass"))
    bad = lab.openvpn(_client_spaces(lab)[3], bad_prof.replace(f"remote {SRV_IP} 1194 udp",
                                                               "remote 198.18.5.1 1194 udp"), "nocert-bad", wait=0)
    procs.append(bad)
    assert bad.wait_for("AUTH_FAILED", 15), bad.log()[-1500:]


def test_tls_crypt_v2_client_key_with_metadata(lab, procs):
    """A client key wrapped with user metadata (as `openvpn --genkey tls-crypt-v2-client KEY META`
    makes it): the server unwraps it, lets the client in, and logs the metadata."""
    import base64
    import subprocess
    meta = base64.b64encode(b"site=lab-7;owner=ops").decode()
    key = lab.tmp / "client2-meta.v2.key"
    subprocess.run(["openvpn", "--tls-crypt-v2", str(lab.pki.dir / "v2server.key"), "--genkey",
                    "tls-crypt-v2-client", str(key), meta], check=True, capture_output=True, timeout=30)
    srv = start_our_server(lab, procs, protection="tls-crypt-v2")
    prof = client_profile(lab.pki, "udp", protection="none", client="client2", extra=f"tls-crypt-v2 {key}\n")
    cli = lab.openvpn(lab.cli, prof, f"v2meta-{len(lab.procs)}")
    procs.append(cli)
    traffic_both_ways(lab, lab.cli, 200_000)
    assert f"tls-crypt-v2 user metadata {meta}" in srv.log(), srv.log()[-1500:]


@pytest.mark.parametrize("shared, server", [("tls-auth", "debian"), ("tls-auth", "ours"), ("tls-crypt", "ours")])
def test_tls_crypt_v2_beside_a_shared_key_serves_both_kinds_of_client(lab, procs, shared, server):
    """compat50: a server config with `tls-crypt-v2` and `tls-auth` (or `tls-crypt`), as OpenVPN
    2.6 takes it for moving clients to their own keys one by one (its manual: "the server will
    detect whether the client is using client-specific keys"): Debian's client with the shared
    key and Debian's client with a tls-crypt-v2 key of its own both get in at once, each with
    traffic; one with no wrapping at all does not. Debian's server first: what ours must match."""
    extra = (f"tls-auth {lab.pki.dir / 'static.key'} 0\n" if shared == "tls-auth"
             else f"tls-crypt {lab.pki.dir / 'static.key'}\n")
    if server == "ours":
        srv = start_our_server(lab, procs, protection="tls-crypt-v2", extra=extra)
    else:
        srv = lab.openvpn(lab.srv, server_config(lab.pki, protection="tls-crypt-v2", extra=extra),
                          f"ovpnsrv-{len(lab.procs)}")
        procs.append(srv)
    spaces = _client_spaces(lab)
    old, new, bare = spaces[0], spaces[1], spaces[2]
    up = _all_up(lab, procs, [
        (old, client_profile(lab.pki, "udp", protection=shared, remotes=[("198.18.2.1", 1194, "udp")]), "v2mix-old"),
        (new, client_profile(lab.pki, "udp", protection="tls-crypt-v2", client="client2",
                             remotes=[("198.18.3.1", 1194, "udp")]), "v2mix-new")])
    for ns in (old, new):
        assert lab.ping(ns, TUN_SERVER_IP, 3) == 3, srv.log()[-2000:]
        assert lab.ping(lab.srv, tun_ip(ns), 2) == 2, srv.log()[-2000:]
    nowrap = lab.openvpn(bare, client_profile(lab.pki, "udp", protection="none", client="client3",
                                              remotes=[("198.18.4.1", 1194, "udp")], extra="hand-window 5\n"),
                         "v2mix-bare", wait=0)
    procs.append(nowrap)
    assert nowrap.wait_for("TLS key negotiation failed to occur", 30), nowrap.log()[-1500:]
    assert "Initialization Sequence Completed" not in nowrap.log()
    assert all(p.alive() for p in up)


@pytest.mark.parametrize("initiator", ["server", "client", "both"])
def test_renegotiation_with_openvpn_client_under_traffic(lab, procs, initiator):
    """reneg-sec of a few seconds on one side: keys roll over during a ping stream and a transfer
    without losing the tunnel (our server answering OpenVPN's renegotiation, or starting it).
    `both`: the same reneg-sec on both ends, so both start a renegotiation at about the same
    moment -- with one key in negotiation at a time, the crossing soft resets still meet on one.
    reneg-sec 2 and 6 s of pings (helper trim44a; 4 and 10 s before): the same two or more
    rollovers inside the stream, in 4 s less per case."""
    srv = start_our_server(lab, procs, reneg_sec=2 if initiator != "client" else None)
    prof = client_profile(lab.pki, "udp", extra="reneg-sec 2\n" if initiator != "server" else "")
    cli = lab.openvpn(lab.cli, prof, f"reneg-{initiator}-{len(lab.procs)}")
    procs.append(cli)
    received = lab.ping(lab.cli, TUN_SERVER_IP, count=30, interval=0.2, timeout=40)   # ~6 s
    assert received >= 29, f"lost {30 - received} of 30 pings across renegotiations"
    assert lab.tcp_transfer(lab.srv, TUN_SERVER_IP, lab.cli, 5_000_000) > 0
    n = len(re.findall(r"key renegotiated", srv.log()))
    assert n >= 2, srv.log()[-2000:]


def test_openvpn_client_changing_address_keeps_its_session(lab, procs):
    """The client's source address changes mid-session (a roaming laptop, a NAT rebinding): the
    server finds it by peer-id, moves it to the new address, and traffic goes on without a new
    handshake."""
    srv = start_our_server(lab, procs)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp"), f"float-{len(lab.procs)}")
    procs.append(cli)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2
    dev = lab.cli.run("ip -o -4 addr show to 198.18.0.0/24").stdout.split()[1]
    lab.cli.run(f"ip addr add 198.18.0.3/24 dev {dev}")
    try:
        lab.cli.run(f"ip route replace 198.18.0.0/24 dev {dev} src 198.18.0.3")
        assert lab.ping(lab.cli, TUN_SERVER_IP, 5) >= 4, srv.log()[-1500:]
        assert re.search(r"client1/\S+: moved from 198\.18\.0\.2:\d+ to 198\.18\.0\.3:\d+",
                         srv.log()), srv.log()[-1500:]
        assert lab.tcp_transfer(lab.srv, TUN_SERVER_IP, lab.cli, 500_000, reverse=True) > 0
        assert srv.log().count("authenticated (CN=client1") == 1, "the move must not need a new session"
    finally:
        lab.cli.run(f"ip route replace 198.18.0.0/24 dev {dev} src 198.18.0.2", check=False)
        lab.cli.run(f"ip addr del 198.18.0.3/24 dev {dev}", check=False)


@pytest.mark.parametrize("notify, restart", [(1, "server-pushed-connection-reset"), (0, "remote-exit")])
def test_sigterm_notifies_clients_and_cleans_up(lab, procs, notify, restart):
    """SIGTERM: every UDP client is told (OpenVPN restarts at once instead of waiting out
    ping-restart): with explicit-exit-notify 1 a RESTART, as OpenVPN 2.6's server sends (more in
    test_restart_vs_openvpn.py), without it an OCC exit; the TUN and routes go, and the clients
    come back to a new server."""
    extra = f"route 198.18.77.0 255.255.255.0\nexplicit-exit-notify {notify}\n"
    srv = start_our_server(lab, procs, extra=extra)
    cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp"), f"term-{len(lab.procs)}")
    procs.append(cli)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2
    assert srv.stop(8) == 0
    assert "stopping: notifying 1 clients" in srv.log()
    assert cli.wait_for(rf"SIGUSR1\[soft,{restart}\] received, process restarting", 5), cli.log()[-1500:]
    links = lab.srv.run("ip -o link show").stdout
    routes = lab.srv.run("ip route show").stdout
    assert "tun0" not in links and "198.18.77.0" not in routes, links + routes
    assert cli.p.poll() is None, "the OpenVPN client must restart, not exit"
    srv2 = start_our_server(lab, procs, extra=extra)
    assert cli.wait_count("Initialization Sequence Completed", 2, 40), cli.log()[-1500:]
    assert lab.wait_ping(lab.cli, TUN_SERVER_IP, 15), srv2.log()[-1500:]


def test_pushed_redirect_gateway_and_dns_reach_the_openvpn_client(lab, procs):
    srv = start_our_server(lab, procs, extra='push "redirect-gateway def1"\npush "dhcp-option DNS 198.18.0.53"\n')
    lab.cli.run("ip route replace default via 198.18.0.1")
    try:
        cli = lab.openvpn(lab.cli, client_profile(lab.pki, "udp"), f"redir-{len(lab.procs)}")
        procs.append(cli)
        routes = lab.cli.run("ip route show").stdout
        assert "0.0.0.0/1 via 198.19.0.1 dev tun0" in routes and "128.0.0.0/1 via 198.19.0.1 dev tun0" in routes, \
            routes
        assert re.search(r"PUSH_REPLY,.*redirect-gateway def1", cli.log())
        assert re.search(r"PUSH_REPLY,.*dhcp-option DNS 198\.18\.0\.53", cli.log())
        assert lab.ping(lab.cli, "198.18.100.1", 2) == 2        # the server's side, via the default routes
    finally:
        lab.cli.run("ip route del default", check=False)


def test_openvpn_client_killed_and_restarted_on_the_same_port(lab, procs):
    """An OpenVPN client bound to a fixed port dies without an exit notice and comes back from the
    same address and port: the server lets the new session replace the old one at once (no
    waiting for ping-restart), and replayed packets could not have done that."""
    import signal
    srv = start_our_server(lab, procs)
    prof = client_profile(lab.pki, "udp").replace("nobind\n", "lport 41194\nbind\n")
    cli = lab.openvpn(lab.cli, prof, f"fixedport-{len(lab.procs)}")
    procs.append(cli)
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2
    os.killpg(cli.p.pid, signal.SIGKILL)
    cli.p.wait(5)
    lab.cli.run("ip link del tun0", check=False)
    t0 = time.monotonic()
    cli2 = lab.openvpn(lab.cli, prof, f"fixedport2-{len(lab.procs)}")
    procs.append(cli2)
    assert time.monotonic() - t0 < 15, "the restarted client had to wait for the old session to time out"
    # The old session ends when the new one is authenticated (same certificate, same address).
    assert srv.wait_for("another client connected with common name client1|replaced by a new session from the "
                        "same address", 5), srv.log()[-2000:]
    assert re.search(r"client1/198\.18\.0\.2:41194: connected", srv.log())
    traffic_both_ways(lab, lab.cli, 200_000)


def lab_bin() -> str:
    return OUR_BIN


def _v6_outer(lab):
    """IPv6 on the lab's WAN veth (documentation prefix), no DAD delay."""
    if "2001:db8:1::1" not in lab.srv.run("ip -6 addr", check=False).stdout:
        lab.srv.run(f"ip -6 addr add 2001:db8:1::1/64 dev va{lab.tag} nodad")
        lab.cli.run(f"ip -6 addr add 2001:db8:1::2/64 dev vb{lab.tag} nodad")


@pytest.mark.parametrize("client_kind", ["openvpn", "ours"])
@pytest.mark.parametrize("proto", ["udp6", "tcp6"])
def test_ipv6_transport_and_ipv6_in_the_tunnel(lab, procs, client_kind, proto):
    """proto udp6/tcp6 on the outside, server-ipv6 inside: v4 and v6 both cross the tunnel."""
    _v6_outer(lab)
    base = "tcp" if proto.startswith("tcp") else "udp"
    cfg = server_config(lab.pki, base, extra="server-ipv6 2001:db8:100::/64\n")
    cfg = cfg.replace("proto tcp-server\n", "proto tcp6-server\n").replace("proto udp\n", "proto udp6\n")
    srv = lab.ours(lab.srv, cfg, f"oursrv6-{len(lab.procs)}", pattern=r"listening on (UDP|TCP) \[::\]")
    procs.append(srv)
    prof = client_profile(lab.pki, base, remotes=[("2001:db8:1::1", 1194, proto)])
    if client_kind == "openvpn":
        cli = lab.openvpn(lab.cli, prof, f"ovpn6-{len(lab.procs)}")
    else:
        cli = lab.ours(lab.cli, prof, f"ours6-{len(lab.procs)}")
    procs.append(cli)
    assert re.search(r"2001:db8:1::2", srv.log()), srv.log()[-1500:]
    assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2
    r = lab.cli.run("ping -6 -n -q -c 3 -i 0.2 -W 2 2001:db8:100::1", check=False)
    assert " 3 received" in r.stdout, r.stdout + srv.log()[-1500:] + cli.log()[-1500:]
    m = re.search(r"inet6 (2001:db8:100::\S+)/", lab.cli.run("ip -6 -o addr show dev tun0").stdout)
    assert m, "no IPv6 address on the client's tun0"
    r = lab.srv.run(f"ping -6 -n -q -c 2 -i 0.2 -W 2 {m.group(1)}", check=False)
    assert " 2 received" in r.stdout, r.stdout


def _eduvpn_server_config(lab, extra_lines: list[str]) -> str:
    """A server config with the directives an eduVPN node generates for one UDP process."""
    pki = lab.pki
    lines = ["# OpenVPN Server Config | generated like an eduVPN node", "verb 3", "dev-type tun", "user nobody",
             "group nogroup", "topology subnet", "persist-key", "persist-tun", "remote-cert-tls client", "dh none",
             "tls-version-min 1.3", "data-ciphers AES-256-GCM:CHACHA20-POLY1305", "reneg-sec 36000",
             *extra_lines,
             "server 198.19.0.0 255.255.255.0", "server-ipv6 2001:db8:100::/64", "max-clients 252",
             "keepalive 10 60", "script-security 2", "dev tun0", "port 1194", "setenv PROFILE_ID default",
             "proto udp6",
             f"<ca>\n{pki.ca.read_text()}</ca>", f"<cert>\n{pki.server_cert.read_text()}</cert>",
             f"<key>\n{pki.server_key.read_text()}</key>",
             f"<tls-crypt>\n{(pki.dir / 'static.key').read_text()}</tls-crypt>",
             "log /dev/null", "explicit-exit-notify 1", 'push "explicit-exit-notify 1"', "client-to-client",
             'push "redirect-gateway def1 ipv6"', 'push "route 0.0.0.0 0.0.0.0"', 'push "route-ipv6 ::/0"',
             'push "block-outside-dns"', 'push "dhcp-option DNS 198.18.0.53"']
    return "\n".join(lines) + "\n"


def _wait_file(path, lines: int, timeout: float = 10) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and len(path.read_text().splitlines()) >= lines:
            return True
        time.sleep(0.2)
    return False


def _eduvpn_client_profile(lab, client: str) -> str:
    pki = lab.pki
    cert, key = pki.clients[client]
    return ("# Profile: lab (default)\n\ndev tun\nclient\nnobind\nremote-cert-tls server\nverb 3\n"
            "server-poll-timeout 10\ntls-version-min 1.3\ndata-ciphers AES-256-GCM:CHACHA20-POLY1305\n"
            f"reneg-sec 0\n<ca>\n{pki.ca.read_text()}</ca>\n<cert>\n{cert.read_text()}</cert>\n"
            f"<key>\n{key.read_text()}</key>\n<tls-crypt>\n{(pki.dir / 'static.key').read_text()}</tls-crypt>\n"
            "remote 2001:db8:1::1 1194 udp\n")


def test_eduvpn_generated_server_config(lab, procs, request):
    """An eduVPN node's server config runs unchanged, its client-connect/client-disconnect scripts
    and management socket included (here at lab paths: the node's own scripts are not installed);
    its own client profiles connect, OpenVPN's client and ours, and the full-tunnel pushes work."""
    import subprocess
    _v6_outer(lab)
    # The config has `user nobody`: its scripts run as nobody, so they live (and log) where nobody
    # can reach, not in pytest's 0700 tmp.
    hooks = Path(tempfile.mkdtemp(prefix="vpn-server-node-"))
    hooks.chmod(0o755)
    request.addfinalizer(lambda: shutil.rmtree(hooks, ignore_errors=True))
    for name in ("client-connect", "client-disconnect"):
        (hooks / name).write_text(f"#!/bin/sh\necho \"$common_name $ifconfig_pool_remote_ip\" >> {hooks}/{name}.log\n")
        (hooks / name).chmod(0o755)
        (hooks / f"{name}.log").touch()
        os.chown(hooks / f"{name}.log", pwd.getpwnam("nobody").pw_uid, -1)
    sock = lab.tmp / "default-0.sock"
    edu = _eduvpn_server_config(lab, [f"client-connect {hooks}/client-connect",
                                      f"client-disconnect {hooks}/client-disconnect",
                                      f"management {sock} unix"])
    full = lab.write("edu-full.conf", edu)
    r = subprocess.run([lab_bin(), "check", str(full)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    # Its `log /dev/null` sends our output where OpenVPN's goes, nowhere: here into a file to watch.
    logf = lab.tmp / "edusrv.log"
    assert "\nlog /dev/null\n" in edu
    srv = lab.ours(lab.srv, edu.replace("\nlog /dev/null\n", f"\nlog {logf}\n"), f"edusrv-{len(lab.procs)}",
                   wait=0, readable_python=True)
    procs.append(srv)
    assert wait_for_text(logf, "privileges dropped", 60), (logf.read_text() if logf.exists() else "")[-3000:]
    assert "privileges dropped" not in srv.log(), "the log went to stdout/stderr too"
    lab.cli.run("ip route replace default via 198.18.0.1")
    lab.cli.run("ip -6 route replace default via 2001:db8:1::1")
    try:
        for kind in ("openvpn", "ours"):
            prof = _eduvpn_client_profile(lab, "client1")
            cli = (lab.openvpn(lab.cli, prof, f"educli-{len(lab.procs)}") if kind == "openvpn"
                   else lab.ours(lab.cli, prof, f"educli-{len(lab.procs)}"))
            procs.append(cli)
            r4 = lab.cli.run("ip -4 route show").stdout
            assert "0.0.0.0/1" in r4 and "128.0.0.0/1" in r4, f"{kind}: {r4}"
            assert lab.ping(lab.cli, TUN_SERVER_IP, 2) == 2, f"{kind}: " + logf.read_text()[-1500:]
            r = lab.cli.run("ping -6 -n -q -c 2 -i 0.2 -W 2 2001:db8:100::1", check=False)
            assert " 2 received" in r.stdout, f"{kind}: " + r.stdout
            assert lab.tcp_transfer(lab.srv, TUN_SERVER_IP, lab.cli, 300_000) > 0
            cli.stop_promptly(8)
        seen = (hooks / "client-connect.log").read_text().split()
        assert seen[0::2] == ["client1", "client1"] and all(a.startswith("198.19.0.") for a in seen[1::2]), seen
        assert _wait_file(hooks / "client-disconnect.log", 2)
    finally:
        lab.cli.run("ip route del default", check=False)
        lab.cli.run("ip -6 route del default", check=False)
