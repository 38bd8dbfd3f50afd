"""`config FILE` in a config (config/include.py): a split server config (a common file, a file per
instance) reads as one, every error names its own file:line, and a mistake fails at the `config`
line before start, never waits (a FIFO, /dev/zero) or reads without end (a loop, a fan-out)."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from appliance.openvpn.config import ConfigError, load_config, parse_config
from appliance.openvpn.config.include import MAX_DEPTH
from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue
from tests.gateway.conftest import _kpem, _pem, server_conf

_CA = issue("Include CA", None, None)
_SRV = issue("server", _CA, ExtendedKeyUsageOID.SERVER_AUTH)
PKI = {"ca": _pem(_CA[0]), "server": (_pem(_SRV[0]), _kpem(_SRV[1])), "clients": {}}
# A common file: everything but the instance's own port and pool.
COMMON = server_conf(PKI).replace("port 1194\n", "").replace("server 198.19.0.0 255.255.255.0\n", "")


def _errors(e: ConfigError) -> list[ConfigError]:
    return list(getattr(e, "errors", [e]))


def _split(tmp_path: Path, instance_extra: str = "", common_extra: str = "") -> Path:
    (tmp_path / "common.conf").write_text(common_extra + COMMON)
    inst = tmp_path / "inst1.conf"
    inst.write_text(f"port 1195\nserver 198.19.1.0 255.255.255.0\nconfig common.conf\n{instance_extra}")
    return inst


def test_a_split_server_config_reads_as_one_with_inline_blocks_in_the_common_file(tmp_path):
    o = load_config(str(_split(tmp_path)))
    assert o.role == "server" and o.port == 1195 and o.ca is not None and o.key is not None
    assert o.source["port"] == (str(tmp_path / "inst1.conf"), 1)
    assert o.source["ca"][0] == str(tmp_path / "common.conf")


def test_an_error_in_the_included_file_names_that_file_and_line(tmp_path):
    inst = _split(tmp_path, common_extra="dev tun\nno-such-directive 1\n")
    with pytest.raises(ConfigError) as ei:
        load_config(str(inst))
    bad = [e for e in _errors(ei.value) if e.directive == "no-such-directive"]
    assert [(e.path, e.line) for e in bad] == [(str(tmp_path / "common.conf"), 2)]
    assert f"{tmp_path / 'common.conf'}:2: no-such-directive" in str(bad[0])


def test_a_conflict_found_after_the_whole_parse_points_into_the_included_file(tmp_path):
    # `client` in the common file, `server` in the instance: finish() names the common file's line.
    inst = _split(tmp_path, common_extra="client\n")
    with pytest.raises(ConfigError) as ei:
        load_config(str(inst))
    (e,) = [e for e in _errors(ei.value) if e.directive == "client"]
    assert (e.path, e.line) == (str(tmp_path / "common.conf"), 1)


def test_an_error_after_the_config_line_still_names_the_including_file(tmp_path):
    inst = _split(tmp_path, instance_extra="verb x\n")
    with pytest.raises(ConfigError) as ei:
        load_config(str(inst))
    (e,) = _errors(ei.value)
    assert (e.path, e.line, e.directive) == (str(inst), 4, "verb")


def test_an_inline_reference_may_pair_with_a_block_in_another_file(tmp_path):
    ca = COMMON[COMMON.index("<ca>"):COMMON.index("</ca>") + 6]
    (tmp_path / "ca.conf").write_text(ca)
    top = tmp_path / "s.conf"
    top.write_text(COMMON.replace(ca, "ca [inline]\nconfig ca.conf\n") + "port 1194\nserver 198.19.0.0 255.255.255.0\n")
    assert load_config(str(top)).ca is not None


def test_an_inline_block_must_close_in_its_own_file(tmp_path):
    (tmp_path / "half.conf").write_text("<ca>\n-----BEGIN CERTIFICATE-----\n")
    top = tmp_path / "s.conf"
    top.write_text("config half.conf\n</ca>\n")
    with pytest.raises(ConfigError) as ei:
        load_config(str(top))
    assert any((e.path, e.line) == (str(tmp_path / "half.conf"), 1) and "not closed" in str(e)
               for e in _errors(ei.value))


@pytest.mark.parametrize("name, why", [("missing.conf", "No such file"), ("adir", "not a regular file"),
                                       ("/dev/zero", "not a regular file"), ("stdin", "standard input")])
def test_an_unreadable_file_is_refused_at_the_config_line(tmp_path, name, why):
    (tmp_path / "adir").mkdir()
    top = tmp_path / "s.conf"
    top.write_text(f"dev tun\nconfig {name}\n")
    with pytest.raises(ConfigError) as ei:
        load_config(str(top))
    (e,) = [e for e in _errors(ei.value) if e.directive == "config"]
    assert (e.path, e.line) == (str(top), 2) and why in str(e)


def test_a_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "c.fifo"
    os.mkfifo(fifo)
    top = tmp_path / "s.conf"
    top.write_text(f"config {fifo}\n")
    out: list = []
    t = threading.Thread(target=lambda: out.append(pytest.raises(ConfigError, load_config, str(top))), daemon=True)
    t.start()
    t.join(3)
    if t.is_alive():                        # let it go before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert not t.is_alive(), "`config FIFO` waited for a writer"
    assert "not a regular file" in str(out[0].value)


def test_a_file_including_itself_is_refused_at_once_naming_the_chain(tmp_path):
    (tmp_path / "a.conf").write_text("dev tun\nconfig b.conf\n")
    (tmp_path / "b.conf").write_text("config a.conf\n")
    with pytest.raises(ConfigError) as ei:
        load_config(str(tmp_path / "a.conf"))
    (e,) = [e for e in _errors(ei.value) if e.directive == "config"]
    assert (e.path, e.line) == (str(tmp_path / "b.conf"), 1) and "includes itself" in str(e)


def test_nesting_is_limited_as_openvpn_limits_it(tmp_path):
    # OpenVPN 2.6: the top file and 9 more are read; the 10th `config` fails at its line.
    for i in range(MAX_DEPTH + 1):
        (tmp_path / f"{i}.conf").write_text(f"config {i + 1}.conf\n" if i < MAX_DEPTH else "dev tun\n")
    with pytest.raises(ConfigError) as ei:
        load_config(str(tmp_path / "0.conf"))
    (e,) = [e for e in _errors(ei.value) if e.directive == "config"]
    assert (e.path, e.line) == (str(tmp_path / f"{MAX_DEPTH - 1}.conf"), 1) and "deep" in str(e)
    (tmp_path / f"{MAX_DEPTH - 1}.conf").write_text("dev tun\n")       # 10 files: accepted as far as `config` goes
    with pytest.raises(ConfigError) as ei:
        load_config(str(tmp_path / "0.conf"))
    assert not [e for e in _errors(ei.value) if e.directive == "config"]


def test_a_fan_out_is_bounded_not_read_exponentially(tmp_path):
    # Each file names the next 200 times, 9 deep: 200**8 reads without a bound.
    for i in range(MAX_DEPTH - 1):
        (tmp_path / f"{i}.conf").write_text(f"config {i + 1}.conf\n" * 200)
    (tmp_path / f"{MAX_DEPTH - 1}.conf").write_text("dev tun\n")
    with pytest.raises(ConfigError) as ei:
        load_config(str(tmp_path / "0.conf"))
    assert any("`config` lines read in all" in str(e) for e in _errors(ei.value))


def test_a_reload_reads_the_included_file_again(tmp_path):
    inst = _split(tmp_path)
    assert load_config(str(inst), again=True).keepalive == (10, 60)
    (tmp_path / "common.conf").write_text(COMMON.replace("keepalive 10 60", "keepalive 5 30"))
    assert load_config(str(inst), again=True).keepalive == (5, 30)


def test_a_config_read_from_a_string_resolves_from_the_working_directory(tmp_path, monkeypatch):
    _split(tmp_path)
    monkeypatch.chdir(tmp_path)
    o = parse_config("port 1195\nserver 198.19.1.0 255.255.255.0\nconfig common.conf\n")
    assert o.port == 1195 and o.source["ca"][0] == os.path.join(str(tmp_path), "common.conf")


def test_cd_before_config_moves_where_it_is_read_from(tmp_path):
    sub = tmp_path / "etc"
    sub.mkdir()
    _split(sub)
    top = tmp_path / "s.conf"
    top.write_text(f"cd {sub}\nconfig inst1.conf\n")
    assert load_config(str(top)).port == 1195


def test_the_appliance_toml_takes_a_profile_that_includes_another(tmp_path):
    from appliance.config.schema import parse_appliance_config
    _split(tmp_path)
    toml = '[wan]\nname = "eth0"\ndhcp = true\n\n[vpn]\nrole = "server"\nconfig = "inst1.conf"\n'
    cfg = parse_appliance_config(toml, str(tmp_path / "appliance.toml"))
    assert cfg.vpn_options.port == 1195 and cfg.vpn_options.ca is not None
    (tmp_path / "common.conf").write_text("verb x\n" + COMMON)     # its error keeps its own file:line
    with pytest.raises(ConfigError) as ei:
        parse_appliance_config(toml, str(tmp_path / "appliance.toml"))
    assert any((e.path, e.line) == (str(tmp_path / "common.conf"), 1) for e in _errors(ei.value)), ei.value


def test_the_vm_bundle_refuses_an_include_at_its_line_rather_than_bundle_half(tmp_path):
    from appliance.config.bundle import collect
    inst = _split(tmp_path)
    toml = tmp_path / "appliance.toml"
    toml.write_text('[wan]\nname = "eth0"\ndhcp = true\n\n[vpn]\nrole = "server"\nconfig = "inst1.conf"\n')
    with pytest.raises(ConfigError) as ei:
        collect(toml)
    assert any((e.path, e.line, e.directive) == (str(inst), 3, "config") for e in _errors(ei.value)), ei.value


def test_a_config_from_a_pipe_at_start_includes_by_absolute_name_and_its_reload_is_refused(tmp_path):
    _split(tmp_path)
    fifo = tmp_path / "top.fifo"
    os.mkfifo(fifo)
    text = f"port 1195\nserver 198.19.1.0 255.255.255.0\nconfig {tmp_path / 'common.conf'}\n"
    writer = threading.Thread(target=lambda: fifo.write_text(text), daemon=True)
    writer.start()
    o = load_config(str(fifo))
    writer.join(3)
    assert o.port == 1195 and o.ca is not None
    with pytest.raises(ConfigError, match="cannot be read again"):
        load_config(str(fifo), again=True)


def test_included_files_past_the_size_budget_are_refused_once_and_not_read_again(tmp_path, monkeypatch):
    """1,000 `config BIG` lines: each read BIG whole only to refuse it (16 MiB each: 16 s and
    999 errors to fail); now one error, at the line that went past the budget, and no more reads."""
    from appliance.openvpn import regular_file
    from appliance.openvpn.config import include
    monkeypatch.setattr(include, "CONFIG", regular_file.FileKind("a config file", 1024 * 1024))
    reads: list[str] = []
    real = include._read
    monkeypatch.setattr(include, "_read", lambda path: reads.append(path) or real(path))
    (tmp_path / "big.conf").write_text(("#" + "x" * 99 + "\n") * 6000)        # 600 KB
    (tmp_path / "top.conf").write_text("dev tun\n" + "config big.conf\n" * 1000)
    with pytest.raises(ConfigError) as ei:
        load_config(str(tmp_path / "top.conf"))
    over = [e for e in _errors(ei.value) if "in all" in str(e)]
    assert len(over) == 1 and "top.conf:3:" in str(over[0]), _errors(ei.value)[:3]
    assert len(reads) == 2
