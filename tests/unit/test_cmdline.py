"""OpenVPN's command line read as config text (appliance/openvpn/config/cmdline.py): every word
comes back as one argument whatever it holds, directives apply in order with `--config FILE`
read where it stands, and the words OpenVPN refuses are refused with `<command line>:N`."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from appliance import cli
from appliance.openvpn.config import load_command_line, reparse_command_line
from appliance.openvpn.config.cmdline import SOURCE, config_text
from appliance.openvpn.config.lexer import OPTION_PARM_SIZE, tokenize
from appliance.openvpn.errors import ConfigError

# (a word starting with `--` starts the next directive, in 2.6's parse_argv as here)
_word = st.text(st.characters(blacklist_characters="\n\r\0", blacklist_categories=("Cs",)), max_size=40).filter(
    lambda w: not w.startswith("--"))


@settings(max_examples=300, deadline=None)
@given(st.lists(_word, max_size=6))
def test_every_word_comes_back_as_one_argument(words):
    line = config_text(["--setenv", *words]).rstrip("\n")
    assert tokenize(line) == ["setenv", *words]


def _server(tmp_path, pki_lines: str = "") -> str:
    conf = tmp_path / "srv.conf"
    conf.write_text("port 1194\nproto udp\ndev tun\ntopology subnet\nserver 198.19.0.0 255.255.255.0\n"
                    "ca ca.crt\ncert s.crt\nkey s.key\ndh none\nstatus inside.log 30\nverb 3\n" + pki_lines)
    return str(conf)


def test_directives_apply_in_order_around_the_config_file(tmp_path, monkeypatch):
    """Debian's openvpn-server@.service: `--status %t/... --status-version 2 --suppress-timestamps
    --config %i.conf`, run in WorkingDirectory: the file's own `status` (later) wins, as in 2.6,
    and `--verb 5` after --config overrides the file's verb; relative names from the working
    directory."""
    conf = _server(tmp_path)
    monkeypatch.chdir(tmp_path)
    seen: dict[str, bytes] = {}

    def reader(path: str) -> bytes:
        seen[path] = b""
        return open(path, "rb").read() if path.endswith(".conf") else b""
    from appliance.openvpn.config import parse_config
    text = config_text(["--status", "/run/status.log", "--status-version", "2", "--suppress-timestamps",
                        "--config", "srv.conf", "--verb", "5"])
    opts = parse_config(text, SOURCE, read_file=reader)
    assert opts.status[0].endswith("inside.log") and opts.status_version == 2 and opts.verb == 5
    assert opts.role == "server" and conf in {str(tmp_path / p) if not p.startswith("/") else p for p in seen}


def test_refusals_name_the_command_line():
    with pytest.raises(ConfigError, match=r"leading '--'"):
        config_text(["srv.conf", "--verb", "3"])
    with pytest.raises(ConfigError, match="line break"):
        config_text(["--setenv", "A", "x\ny"])
    with pytest.raises(ConfigError, match="names no option"):
        config_text(["--verb", "3", "--"])
    with pytest.raises(ConfigError) as e:
        load_command_line(["--verb", "3", "--no-such-directive", "x"])
    assert f"{SOURCE}:2: no-such-directive" in str(e.value)
    with pytest.raises(ConfigError, match=r"<command line>:2: .*--<ca>: not an option name"):
        config_text(["--verb", "3", "--<ca>", "--x", "--</ca>"])    # no inline block (2.6: unrecognized)


def test_a_reload_reads_the_same_command_line_and_its_file_again(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for f in ("ca.crt", "s.crt", "s.key"):
        (tmp_path / f).write_text("")
    conf = _server(tmp_path)
    first = load_command_line(["--config", conf, "--verb", "4"])
    assert first.verb == 4 and first.status[1] == 30 and first.path == SOURCE
    with open(conf, "a") as f:
        f.write("status inside.log 10\n")
    again = reparse_command_line(first.cmdline)          # what a SIGHUP reads (gateway/ops.py)
    assert again.status[1] == 10 and again.verb == 4 and again.cmdline == first.cmdline


def test_the_program_takes_openvpn_s_words(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["--suppress-timestamps", "--nobind", "--config", "missing.conf"]) == 2
    err = capsys.readouterr().err
    assert f"{SOURCE}:3: config: cannot read missing.conf" in err


def test_a_lone_file_argument_is_run_as_openvpn_reads_it(tmp_path, capsys, monkeypatch):
    """`openvpn FILE` means `openvpn --config FILE`; here `vpn-appliance FILE` is `run FILE`
    (errors name the file), and a subcommand's name is still the subcommand."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "only.conf").write_text("verb 3\n")
    assert cli.main(["only.conf"]) == 2
    assert "only.conf: remote: a client needs at least one `remote`" in capsys.readouterr().err
    (tmp_path / "bench").write_text("verb 3\n")
    assert cli.main(["bench", "--packets", "10"]) == 0
