"""`vpn-appliance import profile.ovpn > appliance.toml`: the profile goes in verbatim and the
result loads as it is."""
from __future__ import annotations

import tomllib

import pytest

from appliance import cli
from appliance.config.ovpn_import import import_profile, toml_string
from appliance.config.schema import load_appliance_config, parse_appliance_config
from appliance.openvpn.errors import ConfigError

PROFILE = """\
# eduVPN-style profile
dev tun
client
nobind
remote-cert-tls server
verb 3
remote 198.18.0.1 1194 udp
remote 198.18.0.1 1194 tcp
<ca>
-----BEGIN CERTIFICATE-----
MIIB
-----END CERTIFICATE-----
</ca>
"""


def test_imported_toml_embeds_the_profile_verbatim_and_loads(tmp_path):
    prof = tmp_path / "edu.ovpn"
    prof.write_text(PROFILE)
    out = import_profile(str(prof))
    assert "inline = '''\n# eduVPN-style profile\n" in out
    assert 'role = "client"' in out and "dhcp = true" in out and "[lan]" in out
    t = tmp_path / "appliance.toml"
    t.write_text(out)
    cfg = load_appliance_config(str(t))
    assert cfg.vpn.inline == PROFILE
    assert cfg.wan.dhcp and cfg.lan is not None and cfg.lan.nat
    assert [(r.proto) for r in cfg.vpn_options.remotes] == ["udp", "tcp"]


def test_profile_with_triple_quotes_falls_back_to_a_basic_string(tmp_path):
    text = PROFILE.replace("# eduVPN-style profile", "# it's '''odd''' \"quoted\" \\ back\tslash")
    prof = tmp_path / "odd.ovpn"
    prof.write_text(text)
    out = import_profile(str(prof))
    assert 'inline = """\n' in out
    assert load_appliance_config(_save(tmp_path, out)).vpn.inline == text


@pytest.mark.parametrize("text", ["a'", "a''", "x\r\ny\r\n", "bell\x07", "", "'''", '"""', "\\u0041"])
def test_toml_string_round_trips_awkward_text(text):
    assert tomllib.loads(f"v = {toml_string(text)}\n")["v"] == text


def test_relative_files_in_the_profile_resolve_beside_the_toml(tmp_path):
    (tmp_path / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    prof = tmp_path / "p.ovpn"
    prof.write_text("client\ndev tun\nremote 198.18.0.1\nca ca.crt\n")
    cfg = load_appliance_config(_save(tmp_path, import_profile(str(prof))))
    assert cfg.vpn_options.ca.startswith(b"-----BEGIN CERTIFICATE-----")


def test_server_profile_gives_a_server_toml(tmp_path):
    prof = tmp_path / "s.conf"
    prof.write_text("mode server\ntls-server\ndev tun\nserver 198.18.60.0 255.255.255.0\ntopology subnet\ndh none\n"
                    "<ca>\nx\n</ca>\n<cert>\nx\n</cert>\n<key>\nx\n</key>\n")
    out = import_profile(str(prof))
    cfg = parse_appliance_config(out, str(tmp_path / "appliance.toml"))
    assert cfg.vpn.role == "server" and cfg.lan is None


def test_profile_asking_for_a_password_gets_a_note(tmp_path):
    prof = tmp_path / "p.ovpn"
    prof.write_text(PROFILE + "auth-user-pass\n")
    out = import_profile(str(prof))
    assert "add an <auth-user-pass> block" in out


def test_bad_profile_is_reported_with_its_own_line(tmp_path):
    prof = tmp_path / "bad.ovpn"
    prof.write_text("client\ndev tap\nremote 198.18.0.1\n<ca>\nx\n</ca>\n")
    with pytest.raises(ConfigError) as ei:
        import_profile(str(prof))
    assert str(ei.value).startswith(f"{prof}:2: dev: a tap (layer 2) device is not supported in the VM image")


def test_cli_import_prints_the_toml_and_check_accepts_it(tmp_path, capsys):
    prof = tmp_path / "edu.ovpn"
    prof.write_text(PROFILE)
    assert cli.main(["import", str(prof)]) == 0
    out = capsys.readouterr().out
    assert parse_appliance_config(out, str(tmp_path / "x.toml")).vpn.inline == PROFILE
    assert cli.main(["import", str(tmp_path / "nope.ovpn")]) == 2
    assert capsys.readouterr().err.startswith(f"{tmp_path / 'nope.ovpn'}: cannot read")


def _save(d, text: str) -> str:
    p = d / "appliance.toml"
    p.write_text(text)
    return str(p)


def test_user_and_group_of_a_provider_profile_are_commented_out_saying_why(tmp_path, capsys):
    """Provider profiles often say `user nobody` / `group nogroup`: a host run applies them, the
    appliance TOML refuses them, so the imported copy has them commented out (and says so)."""
    text = PROFILE.replace("nobind\n", "nobind\nuser nobody\ngroup nogroup\npersist-key\n")
    prof = tmp_path / "provider.ovpn"
    prof.write_text(text)
    out = import_profile(str(prof))
    cfg = load_appliance_config(_save(tmp_path, out))
    inline = cfg.vpn.inline
    assert "\n# user nobody\n" in inline and "\n# group nogroup\n" in inline
    assert "\nuser nobody" not in inline and "\ngroup nogroup" not in inline
    assert inline.count("not applied in the appliance VM") == 2
    # every other line kept as it was, in order
    kept = [ln for ln in inline.split("\n") if not ln.startswith("# vpn-appliance import")]
    assert [ln.removeprefix("# ") if ln in ("# user nobody", "# group nogroup") else ln for ln in kept] \
        == text.split("\n")
    err = capsys.readouterr().err
    assert f"{prof}:5:" in err and f"{prof}:6:" in err
    # the profile itself, run on a host, still has them
    with pytest.raises(ConfigError, match="user"):
        parse_appliance_config(out.replace("# user nobody", "user nobody"), str(tmp_path / "a.toml"))


def test_a_profile_over_the_config_size_limit_is_refused_unread(tmp_path):
    from appliance.openvpn.regular_file import CONFIG
    p = tmp_path / "huge.ovpn"
    with open(p, "wb") as f:
        f.truncate(CONFIG.limit + 1)                 # sparse: read whole, 16 MiB of NULs
    with pytest.raises(ConfigError, match="too large"):
        import_profile(str(p))
