"""Server configs and client profiles as the common installers and routers write them
(tests/installer_configs.py: PiVPN, angristan's and Nyr's openvpn-install, kylemanna's
docker-openvpn, Debian's samples, OpenWrt, pfSense, OPNsense, EdgeRouter/VyOS, eduVPN) pass our
server's and client's checks unchanged, but for the lines each documents as refused (README
"Configs from installers and routers"); the appliance VM's import takes the server configs too,
refusing only its own (scripts). A line that turns from accepted to refused, or a refusal that
stops happening, fails here by name; a few lines whose meaning is easy to get wrong are checked
for what OpenVPN 2.6 makes of them."""
from __future__ import annotations

import pytest

from appliance.config.ovpn_import import import_profile
from appliance.gateway.ops import check_scripts
from appliance.openvpn.config import ConfigError, ConfigErrors, load_config, parse_config
from appliance.openvpn.settings import check_key_material
from tests.installer_configs import INSTALLERS, render


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return {name: render(inst, tmp_path_factory.mktemp(name)) for name, inst in INSTALLERS.items()}


def _errors(path: str, text: str | None = None) -> list[ConfigError]:
    """What `vpn-appliance check` reports for the file (its user/group lookup aside: that one
    depends on the host's accounts)."""
    try:
        o = load_config(path) if text is None else parse_config(text, path)
        check_key_material(o)
        if o.role == "server":
            check_scripts(o)
    except ConfigErrors as e:
        return list(e.errors)
    except ConfigError as e:
        return [e]
    return []


def _refused_prefix(inst, line: str) -> str | None:
    return next((p for p in inst.refused if line.startswith(p)), None)


@pytest.mark.parametrize("name", sorted(INSTALLERS))
def test_the_server_config_as_written_is_refused_only_at_its_documented_lines(name, rendered):
    inst, r = INSTALLERS[name], rendered[name]
    lines = r.server_text.split("\n")
    errors = _errors(str(r.server))
    at_lines = [e for e in errors if e.line is not None]
    for e in at_lines:
        assert e.path == str(r.server)
        assert _refused_prefix(inst, lines[e.line - 1]) is not None, f"undocumented refusal: {e}"
    assert {_refused_prefix(inst, lines[e.line - 1]) for e in at_lines} == set(inst.refused), errors
    # With a line refused, what it stood for may be missing (pfSense's capath: no CA at all).
    assert {e.directive for e in errors if e.line is None} <= ({"ca"} if inst.replace else set()), errors


@pytest.mark.parametrize("name", sorted(INSTALLERS))
def test_the_server_config_checks_clean_without_its_refused_lines(name, rendered):
    inst, r = INSTALLERS[name], rendered[name]
    kept = []
    for line in r.server_text.split("\n"):
        p = _refused_prefix(inst, line)
        if p is None:
            kept.append(line)
        elif p in inst.replace:
            kept.append(inst.replace[p].replace("{D}", str(r.dir)))
    text = "\n".join(kept)
    assert _errors(str(r.server), text) == []
    o = parse_config(text, str(r.server))
    assert o.role == "server"
    for n in o.notes:        # every note names its line in this file
        assert n.startswith(f"{r.server}:"), n


@pytest.mark.parametrize("name", sorted(INSTALLERS))
def test_the_client_profile_it_hands_out_parses_and_its_keys_check(name, rendered):
    r = rendered[name]
    assert _errors(str(r.client)) == []
    o = load_config(str(r.client))
    assert o.role == "client" and o.remotes and o.remotes[0].host == "198.18.0.1"


@pytest.mark.parametrize("name", sorted(n for n, i in INSTALLERS.items() if not i.refused))
def test_the_vm_import_takes_the_server_config_refusing_only_scripts(name, rendered):
    """`vpn-appliance import server.conf` (the VM's TOML): user/group commented out with a word
    on stderr, the scripts the VM cannot run refused at their lines."""
    inst, r = INSTALLERS[name], rendered[name]
    if not inst.vm_refused:
        assert "[vpn]" in import_profile(str(r.server))
        return
    with pytest.raises(ConfigError) as ei:
        import_profile(str(r.server))
    errs = ei.value.errors if isinstance(ei.value, ConfigErrors) else [ei.value]
    assert {e.directive for e in errs} == set(inst.vm_refused), errs
    assert all("runs no scripts" in e.message for e in errs)


def _server(rendered, name):
    return load_config(str(rendered[name].server))


def test_docker_openvpn_key_direction_after_tls_auth_and_its_lzo_framing(rendered):
    """`tls-auth FILE` then `key-direction 0` (docker-openvpn): 2.6 takes the direction whatever
    the order; `comp-lzo no` frames, and is pushed to clients that lack it."""
    o = _server(rendered, "docker-openvpn")
    assert o.key_direction == 0 and o.tls_auth
    assert o.comp_lzo == "no" and "comp-lzo no" in o.push
    assert [(r.network, r.netmask) for r in o.route] == [("198.19.254.0", "255.255.255.0")]
    assert o.dev == "tun0"


def test_angristan_pushes_and_relative_files(rendered):
    """angristan's unquoted `push tun-ipv6`, its groups, tls-crypt-v2, and files relative to the
    config's directory (its systemd unit's working directory)."""
    o, d = _server(rendered, "angristan"), rendered["angristan"].dir
    assert o.push[0] == "tun-ipv6" and "redirect-gateway ipv6" in o.push and "route-ipv6 2000::/3" in o.push
    assert o.tls_groups == "X25519:prime256v1:secp384r1:secp521r1"
    assert o.tls_crypt_v2 and o.server_ipv6 == "fd42:42:42:42::/112"
    assert o.ifconfig_pool_persist[0] == str(d / "ipp.txt") and o.status[0] == str(d / "status.log")
    assert o.data_ciphers == ["AES-128-GCM"] and o.remote_cert_tls == "client"


def test_angristan_fingerprint_block_skips_its_comment_lines(rendered):
    """The server's <peer-fingerprint> block has a `# client1` line before each fingerprint:
    skipped, as 2.6's parse_hash_fingerprint_multiline skips comment lines."""
    o = _server(rendered, "angristan-fingerprint")
    fp = rendered["angristan-fingerprint"].server_text.split("# client1\n")[1].split("\n")[0]
    assert o.peer_fingerprint == [bytes.fromhex(fp.replace(":", ""))]
    assert o.ca is None
    c = load_config(str(rendered["angristan-fingerprint"].client))
    assert len(c.peer_fingerprint) == 1


def test_debian_sample_trailing_comments_and_optional_cipher(rendered):
    """`key server.key  # ...` and `tls-auth ta.key 0 # ...`: the comment ends the line, as in
    2.6's parser; `?CHACHA20-POLY1305` (optional cipher) is kept in the list."""
    o = _server(rendered, "debian-sample")
    assert o.key is not None and o.key_direction == 0
    assert "CHACHA20-POLY1305" in o.data_ciphers and o.data_ciphers[0] == "AES-256-GCM"
    assert o.max_clients == 100


def test_pivpn_curve_status_and_tls_crypt_v2_verify(rendered):
    o = _server(rendered, "pivpn")
    d = rendered["pivpn"].dir
    assert o.ecdh_curve == "prime256v1" and o.status == (str(d / "openvpn-status.log"), 20)
    assert o.status_version == 3 and o.tls_crypt_v2_verify and o.script_security == 2
    assert o.user == "openvpn" and o.group == "openvpn" and o.client_to_client


def test_pivpn_client_key_carries_its_22_character_metadata(rendered):
    """The verify script compares the key's metadata with its list: the key is made with the
    metadata type 0 (user) PiVPN's `--genkey tls-crypt-v2-client` gives it."""
    from appliance.openvpn import keyfiles
    d = rendered["pivpn"].dir
    kc, wkc = keyfiles.parse_tls_crypt_v2_client_key((d / "tc-v2/client1.key").read_text())
    server_key = keyfiles.parse_tls_crypt_v2_server_key((d / "tc-v2/server.key").read_text())
    _, mtype, meta = keyfiles.unwrap_client_key_untrusted(wkc, server_key)
    listed = (d / "tc-v2-metadata.txt").read_text().split()[1]
    assert mtype == 0 and meta.decode() == listed and len(listed) == 22


def test_opnsense_compress_migrate_is_applied(rendered):
    """OPNsense's "migrate" compression choice writes `compress migrate`: taken, sessions start
    without framing (clientpush.py frames a client that announces compression; tests/engine/
    test_compress_migrate.py), MSS leaves room for comp-lzo's byte."""
    from appliance.openvpn.settings import comp_framing, mss_rule
    r = rendered["nyr"]
    o = parse_config(r.server_text + "compress migrate\n", str(r.server))
    assert o.compress == "migrate" and comp_framing(o) is None
    plain = parse_config(r.server_text, str(r.server))
    assert mss_rule(o, False)("AES-256-GCM", True) == mss_rule(plain, False)("AES-256-GCM", True) - 1
