"""Point-to-point TLS links (no pull, no mode server) between ours and Debian's OpenVPN 2.6, in namespaces.

Site A (198.18.0.1, the lab's server namespace) is the tls-server, site B (198.18.0.2) the
tls-client; each has `ifconfig LOCAL REMOTE` and a route to an address behind the other
(198.18.100.1 behind A, 198.18.101.1 behind B), as a site-to-site link between two routers.
What a user checks: the link comes up with either side ours, each site reaches the address
behind the other through the tunnel, both 2.6 peers agree on the data channel (p2p NCP: AES-256-GCM
here, TLS-EKM, a peer-id), and after the Debian peer restarts the tunnel comes back (ours as
tls-server at once, by the new authenticated session; as tls-client at ping-restart, as 2.6's).
Also over TCP (ours as tls-client) and with peer-fingerprint instead of a CA. Hostile: a peer
whose certificate is not from our CA never gets a tunnel, and while it tries the live link
keeps working.
"""
from __future__ import annotations

import time

import pytest

from lab.netns import BEHIND_IP, Lab, until

A_IP, B_IP = "198.18.0.1", "198.18.0.2"
TUN_A, TUN_B = "198.19.30.1", "198.19.30.2"
TUN6_A, TUN6_B = "2001:db8:30::1", "2001:db8:30::2"
BEHIND_B = "198.18.101.1"
UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        lab.cli.run(f"ip addr add {BEHIND_B}/32 dev lo")
        yield lab


def site_a(lab, extra: str = "") -> str:
    p = lab.pki
    return (f"dev tun\nproto udp\nport 1194\nifconfig {TUN_A} {TUN_B}\nifconfig-ipv6 {TUN6_A}/64 {TUN6_B}\n"
            "tls-server\ndh none\n"
            f"ca {p.ca}\ncert {p.server_cert}\nkey {p.server_key}\n"
            f"route {BEHIND_B} 255.255.255.255\nkeepalive 1 4\nverb 3\n{extra}")


def site_b(lab, cert: tuple | None = None, extra: str = "") -> str:
    p = lab.pki
    c, k = cert or p.clients["client1"]
    return (f"dev tun\nproto udp\nremote {A_IP} 1194\nifconfig {TUN_B} {TUN_A}\nifconfig-ipv6 {TUN6_B}/64 {TUN6_A}\n"
            "tls-client\n"
            f"ca {p.ca}\ncert {c}\nkey {k}\nremote-cert-tls server\n"
            f"route {BEHIND_IP} 255.255.255.255\nkeepalive 1 4\nverb 3\n{extra}")


def _start(lab, kind: str, ns, conf: str, name: str, wait: float = 40):
    if kind == "ours":
        return lab.ours(ns, conf, name, wait=wait)
    return lab.openvpn(ns, conf, name, wait=wait)


def _across(lab) -> bool:
    """Each site reaches the address behind the other (source: its own LAN-side address)."""
    b_to_a = lab.cli.run(f"ping -c 2 -i 0.2 -W 2 -I {BEHIND_B} {BEHIND_IP}", check=False).returncode == 0
    a_to_b = lab.srv.run(f"ping -c 2 -i 0.2 -W 2 -I {BEHIND_IP} {BEHIND_B}", check=False).returncode == 0
    six = lab.cli.run(f"ping -6 -c 2 -i 0.2 -W 2 {TUN6_A}", check=False).returncode == 0      # ifconfig-ipv6
    return a_to_b and b_to_a and six


@pytest.mark.parametrize("ours_is", ["a", "b"])
def test_site_to_site_link_and_restart_of_the_debian_peer(lab, procs, ours_is):
    a_kind, b_kind = ("ours", "openvpn") if ours_is == "a" else ("openvpn", "ours")
    # The tls-server waits for its peer: up only once B has connected.
    a = _start(lab, a_kind, lab.srv, site_a(lab), f"a-{a_kind}", wait=0)
    procs.append(a)
    assert a.wait_for("waiting for" if a_kind == "ours" else "link local", 20), a.log()[-2000:]
    b = _start(lab, b_kind, lab.cli, site_b(lab), f"b-{b_kind}")
    procs.append(b)
    assert a.wait_for(UP[a_kind], 30), a.log()[-3000:]
    assert until(lambda: _across(lab), 15, 0.5), (a.log()[-3000:], b.log()[-3000:])
    deb = b if b_kind == "openvpn" else a
    ours = a if a_kind == "ours" else b
    # Both 2.6 peers negotiate the data channel from the key-method messages alone.
    assert deb.wait_for(r"P2P mode NCP negotiation result: TLS_export=1, DATA_v2=1, peer-id \d+, cipher=AES-256-GCM",
                        5), deb.log()[-3000:]
    assert "cipher AES-256-GCM, key derivation tls-ekm" in ours.log(), ours.log()[-3000:]
    # The Debian peer restarts: the tunnel comes back (ours as tls-server takes the new
    # authenticated session at once; as tls-client it restarts at ping-restart).
    deb.stop(8)
    ups = ours.log().count(UP["ours"])
    conf = site_a(lab) if deb is a else site_b(lab)
    ns = lab.srv if deb is a else lab.cli
    deb2 = lab.openvpn(ns, conf, f"{'a' if deb is a else 'b'}-openvpn-again", wait=0)
    procs.append(deb2)
    assert ours.wait_count(UP["ours"], ups + 1, 30), ours.log()[-3000:]
    assert until(lambda: _across(lab), 15, 0.5), (ours.log()[-3000:], deb2.log()[-3000:])
    if ours is a:
        # Not a ping-restart (10 s here): the restarted peer's new session, once authenticated,
        # replaced the dead one.
        assert "a new authenticated session from 198.18.0.2:1194 replaces" in ours.log(), ours.log()[-3000:]
        assert "Inactivity timeout" not in ours.log()


def test_a_peer_with_a_foreign_certificate_gets_no_tunnel_and_the_live_link_stays(lab, procs):
    a = lab.ours(lab.srv, site_a(lab), "a-ours-hostile", wait=0)
    procs.append(a)
    assert a.wait_for("waiting for", 20), a.log()[-2000:]
    b = lab.openvpn(lab.cli, site_b(lab), "b-openvpn-hostile", wait=40)
    procs.append(b)
    assert until(lambda: _across(lab), 15, 0.5), a.log()[-3000:]
    # A second tls-client on B's host with the rogue CA's certificate, from another port.
    # (Its own tunnel addresses and no route: OpenVPN configures a p2p TUN at start.)
    conf = "\n".join(line for line in site_b(lab, cert=lab.pki.rogue, extra="lport 1195\n").splitlines()
                     if not line.startswith(("ifconfig", "route", "dev ")))
    rogue = lab.openvpn(lab.cli, conf + "\ndev tun9\nifconfig 198.19.31.2 198.19.31.1\n", "rogue", wait=0)
    procs.append(rogue)
    assert a.wait_for("did not authenticate", 25), a.log()[-3000:]
    assert _across(lab), a.log()[-3000:]
    assert "Initialization Sequence Completed" not in rogue.log()
    assert a.log().count(UP["ours"]) == 1, a.log()[-3000:]


@pytest.mark.parametrize("ours_is", ["a", "b"])
def test_over_tcp(lab, procs, ours_is):
    """proto tcp-server (site A) / tcp-client (site B), either side ours."""
    a_kind, b_kind = ("ours", "openvpn") if ours_is == "a" else ("openvpn", "ours")
    a = _start(lab, a_kind, lab.srv, site_a(lab).replace("proto udp", "proto tcp-server"), f"a-{a_kind}-tcp", wait=0)
    procs.append(a)
    assert a.wait_for("waiting for" if a_kind == "ours" else "Listening for incoming TCP connection", 20), \
        a.log()[-2000:]
    b = _start(lab, b_kind, lab.cli, site_b(lab).replace("proto udp", "proto tcp-client"), f"b-{b_kind}-tcp")
    procs.append(b)
    assert a.wait_for(UP[a_kind], 20), a.log()[-3000:]
    assert until(lambda: _across(lab), 15, 0.5), (a.log()[-3000:], b.log()[-3000:])
    deb = a if a_kind == "openvpn" else b
    assert deb.wait_for(r"P2P mode NCP negotiation result: TLS_export=1, DATA_v2=1", 5), deb.log()[-3000:]


def test_over_tcp_a_strangers_idle_connection_frees_the_port_at_ping_restart(lab, procs):
    """Ours as tcp-server takes one connection at a time: a stranger's connection that never
    starts a session (no key needed to open it) is dropped at ping-restart (4 s here) or
    hand-window, as Debian's 2.6 drops it ("Inactivity timeout (--ping-restart)"), and the real
    peer gets its link. It used to hold the port for good."""
    a = lab.ours(lab.srv, site_a(lab).replace("proto udp", "proto tcp-server"), "a-ours-tcp-idle", wait=0)
    procs.append(a)
    assert a.wait_for("waiting for", 20), a.log()[-2000:]
    idle = lab.start(lab.cli, ["python3", "-c", f"import socket, time; s = socket.create_connection(('{A_IP}', 1194)); "
                               "time.sleep(40)"], "idle-tcp")
    procs.append(idle)
    assert a.wait_for(r"peer 198\.18\.0\.2:\d+ \(tcp\)", 10), a.log()[-2000:]
    b = lab.openvpn(lab.cli, site_b(lab).replace("proto udp", "proto tcp-client"), "b-openvpn-tcp-idle", wait=0)
    procs.append(b)
    assert a.wait_for("no authenticated session from", 10), a.log()[-3000:]
    assert b.wait_for("Initialization Sequence Completed", 25), (a.log()[-3000:], b.log()[-3000:])
    assert until(lambda: _across(lab), 15, 0.5), a.log()[-3000:]


def _fingerprint(cert_path) -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    fp = x509.load_pem_x509_certificate(cert_path.read_bytes()).fingerprint(hashes.SHA256())
    return ":".join(f"{b:02X}" for b in fp)


def test_peer_fingerprint_instead_of_a_ca(lab, procs):
    """OpenVPN's recommended replacement for static keys: each side pins the other's certificate."""
    p = lab.pki
    c, _k = p.clients["client1"]
    a_conf = site_a(lab).replace(f"ca {p.ca}\n", f"peer-fingerprint {_fingerprint(c)}\n")
    b_conf = site_b(lab).replace(f"ca {p.ca}\n", f"peer-fingerprint {_fingerprint(p.server_cert)}\n")
    a = lab.ours(lab.srv, a_conf, "a-ours-fp", wait=0)
    procs.append(a)
    assert a.wait_for("waiting for", 20), a.log()[-2000:]
    b = lab.openvpn(lab.cli, b_conf, "b-openvpn-fp", wait=40)
    procs.append(b)
    assert until(lambda: _across(lab), 15, 0.5), (a.log()[-3000:], b.log()[-3000:])
