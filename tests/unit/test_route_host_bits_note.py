"""`check` names a `route` whose network has host bits outside its mask, at its line (review48b):
the kernel refuses it at start and the gateway runs on without it, as OpenVPN 2.6.14 (net48's
interop test, tests/interop/test_route_refused_vs_openvpn.py), so it is a note, not an error."""
from __future__ import annotations

from appliance.openvpn.config import parse_config

SERVER = ("port 1194\ndev tun\ntopology subnet\nserver 198.19.0.0 255.255.255.0\ndh none\n"
          "route 198.18.5.1 255.255.255.0\nroute 198.18.6.0 255.255.255.0\nroute 198.18.7.9\n"
          "<ca>\n</ca>\n<cert>\n</cert>\n<key>\n</key>\n")


def test_a_route_with_host_bits_is_noted_at_its_line_and_kept():
    o = parse_config(SERVER, "/mem/server.conf", read_file=lambda p: b"")
    notes = [n for n in o.notes if ": route: " in n]
    assert notes == ["/mem/server.conf:6: route: 198.18.5.1 has host bits outside 255.255.255.0: the kernel refuses "
                     "this route at start and it runs without it, as OpenVPN 2.6 (\"ERROR: Linux route add command "
                     "failed\"); the network is 198.18.5.0/24"], o.notes
    assert [r.network for r in o.route] == ["198.18.5.1", "198.18.6.0", "198.18.7.9"]       # none dropped


def test_check_prints_it_at_its_line(tmp_path, capsys):
    from cryptography.hazmat.primitives.serialization import Encoding

    from appliance import cli
    from appliance.certs import issue
    ca = issue("test CA", None, None)[0].public_bytes(Encoding.PEM).decode()
    f = tmp_path / "p.ovpn"
    f.write_text(f"client\ndev tun\nremote 198.18.0.1 1194\nroute 198.18.5.1 255.255.255.0\n<ca>\n{ca}</ca>\n")
    assert cli.main(["check", str(f)]) == 0
    assert f"# note: {f}:4: route: 198.18.5.1 has host bits outside 255.255.255.0" in capsys.readouterr().out
