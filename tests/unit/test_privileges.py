"""`user`, `group`, `nice`, `mlock`, `chroot`: parsed, resolved and refused where they must be.

Pure tests (no root): the directive table, name resolution with file:line errors, which
capabilities each role keeps, the appliance TOML's refusal. The drop itself, as root, is in the
root-marked test below (in a forked child, so this process keeps its credentials) and, against
Debian's OpenVPN, in tests/interop/test_privdrop.py.
"""
from __future__ import annotations

import grp
import os
import pwd
import subprocess
import sys
import textwrap
import threading

import pytest

from appliance.cli import _validate_runtime
from appliance.config.schema import load_appliance_config
from appliance.host import privileges as pv
from appliance.openvpn.config import ConfigErrors, parse_config
from appliance.openvpn.config.table import TABLE
from appliance.openvpn.config.directives import Kind
from appliance.openvpn.errors import ConfigError

BASE = "client\ndev tun\nremote 198.18.0.1\nca ca.crt\n"
NOGROUP = grp.getgrnam("nogroup").gr_gid


def parse(extra: str):
    return parse_config(BASE + extra, "/etc/openvpn/p.ovpn", lambda p: b"x")


def test_directives_are_applied_or_refused_never_no_ops():
    for name in ("user", "group", "nice", "mlock"):
        assert TABLE[name].kind is Kind.APPLY, name
    assert TABLE["chroot"].kind is Kind.REFUSE
    o = parse("user nobody\ngroup nogroup\nnice 5\nmlock\n")
    assert (o.user, o.group, o.nice, o.mlock) == ("nobody", "nogroup", 5, True)
    assert o.source["user"] == ("/etc/openvpn/p.ovpn", 5) and not any("user" in n for n in o.notes)


@pytest.mark.parametrize("line, why", [
    ("chroot /var/empty", "p.ovpn:5: chroot: not supported: Python imports modules lazily"),
    ("nice 40", "p.ovpn:5: nice:"),
    ("mlock yes", "p.ovpn:5: mlock:"),
    ("user", "p.ovpn:5: user:"),
])
def test_bad_lines_fail_with_file_and_line(line, why):
    with pytest.raises(ConfigError) as ei:
        parse(line + "\n")
    errs = ei.value.errors if isinstance(ei.value, ConfigErrors) else [ei.value]
    assert any(why in str(e) for e in errs), [str(e) for e in errs]


def test_unknown_user_or_group_is_a_config_error_at_its_line():
    o = parse("nice 1\nuser no-such-user-xyz\n")
    with pytest.raises(ConfigError, match=r"p\.ovpn:6: user: no such user 'no-such-user-xyz'"):
        pv.identity_of(o)
    o = parse("user nobody\ngroup no-such-group-xyz\n")
    with pytest.raises(ConfigError, match=r"p\.ovpn:6: group: no such group 'no-such-group-xyz'"):
        pv.identity_of(o)


def test_names_resolve_as_openvpn_does_but_a_lone_user_gets_its_own_group():
    nobody = pwd.getpwnam("nobody")
    assert pv.resolve("nobody", "nogroup") == pv.Identity(nobody.pw_uid, NOGROUP, "nobody", "nogroup")
    assert pv.resolve("nobody", None).gid == nobody.pw_gid      # not root's gid 0, as OpenVPN would keep
    assert pv.resolve(None, "nogroup") == pv.Identity(None, NOGROUP, None, "nogroup")
    assert pv.resolve(str(nobody.pw_uid), None).user == "nobody"
    assert pv.identity_of(parse("")) is None


def test_kept_capabilities_per_role():
    assert pv.kept_capabilities("client", False) == {pv.CAP_NET_ADMIN}
    assert pv.kept_capabilities("server", False) == set()
    assert pv.kept_capabilities("server", True) == {pv.CAP_IPC_LOCK}
    assert pv.cap_names(pv.mask({pv.CAP_NET_ADMIN, pv.CAP_IPC_LOCK})) == "CAP_NET_ADMIN, CAP_IPC_LOCK"
    assert pv.cap_names(0) == "none"


def test_check_resolves_the_user(tmp_path):
    """`vpn-appliance check` (cli._validate_runtime) refuses an unknown user before anything starts."""
    from lab.pki import make_pki
    pki = make_pki(tmp_path / "pki", ["client1"])
    cert, key = pki.clients["client1"]
    text = f"client\ndev tun\nremote 198.18.0.1\nca {pki.ca}\ncert {cert}\nkey {key}\nuser no-such-user-xyz\n"
    p = tmp_path / "p.ovpn"
    p.write_text(text)
    with pytest.raises(ConfigError, match=r"p\.ovpn:7: user: no such user"):
        _validate_runtime(parse_config(text, str(p)))
    assert _validate_runtime(parse_config(text.replace("no-such-user-xyz", "nobody"), str(p))).user == "nobody"


@pytest.mark.parametrize("line", ["user nobody", "group nogroup", "mlock"])
def test_the_appliance_toml_refuses_what_pid_1_cannot_apply(tmp_path, line):
    (tmp_path / "client.ovpn").write_text(f"client\ndev tun\nremote 198.18.0.1 1194\n<ca>\n</ca>\n{line}\n")
    p = tmp_path / "appliance.toml"
    p.write_text(textwrap.dedent("""\
        [wan]
        name = "eth0"
        dhcp = true

        [vpn]
        role = "client"
        config = "client.ovpn"
        """))
    with pytest.raises(ConfigError) as ei:
        load_appliance_config(str(p))
    d = line.split()[0]
    assert f"client.ovpn:6: {d}: not applied by the appliance TOML run" in str(ei.value)


def test_nice_is_applied():
    code = ("import os, logging; logging.basicConfig(level=logging.INFO)\n"
            "from appliance.host.privileges import apply_nice\n"
            "apply_nice(3); print(os.nice(0))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.split()[-1] == str(os.nice(0) + 3), r.stderr


def test_drop_refuses_while_other_threads_run():
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        with pytest.raises(pv.PrivilegeError, match="other threads"):
            pv.drop(pv.resolve("nobody", "nogroup"))
    finally:
        stop.set()
        t.join()


def _drop_in_child(library_paths=None) -> str:
    """Fork (this process stays root), drop in the child, return what /proc says there."""
    if os.geteuid() != 0:
        pytest.fail("needs root (marked root)")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                     # the child: drop, report, exit
        try:
            os.close(r)
            if library_paths is not None:
                pv._library_paths = lambda: library_paths
            k = pv.drop(pv.resolve("nobody", "nogroup"), frozenset({pv.CAP_NET_ADMIN}))
            st = pv._status()
            out = f"{k} {st['Uid']}|{st['Gid']}|{st['Groups']}|{st['CapEff']}|{st['CapAmb']}|{st['CapInh']}"
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            out = f"error {e}"
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    os.waitpid(pid, 0)
    return out


@pytest.mark.root
def test_drop_refuses_a_python_library_the_user_cannot_read(tmp_path):
    private = tmp_path / "lib"
    private.mkdir()
    tmp_path.chmod(0o700)                             # as /root is: nobody cannot enter
    out = _drop_in_child([str(private)])
    assert out.startswith("error user nobody cannot read Python's library at " + str(private)), out


@pytest.mark.root
def test_drop_as_root_keeps_exactly_the_asked_capabilities():
    # the import path check is the test above; here only the (world-readable) /usr library
    out = _drop_in_child(["/usr/lib"])
    nobody = str(pwd.getpwnam("nobody").pw_uid)
    k, rest = out.split(" ", 1)
    uid, gid, groups, eff, amb, inh = rest.split("|")
    assert int(k) == 1 << 12, out
    assert uid.split() == [nobody] * 4 and gid.split() == [str(NOGROUP)] * 4 and groups.split() == [str(NOGROUP)]
    assert int(eff, 16) == 1 << 12 and int(amb, 16) == int(inh, 16) == 0, out


# ------------------------------------------------------------------ the resolvectl helper (root, after a drop)
@pytest.mark.parametrize("argv, ok", [
    (["resolvectl", "dns", "tun0", "198.18.100.1", "2001:db8::53"], True),
    (["resolvectl", "domain", "tun0", "vpn.example", "~corp.example", "~."], True),
    (["resolvectl", "default-route", "tun0", "no"], True),
    (["resolvectl", "revert", "tun0"], True),
    (["resolvectl", "dns", "tun0", "198.18.100.1; reboot"], False),
    (["resolvectl", "dns", "tun0", "--set-dns"], False),
    (["resolvectl", "domain", "tun0", "-h"], False),
    (["resolvectl", "default-route", "tun0", "maybe"], False),
    (["resolvectl", "revert", "tun0", "extra"], False),
    (["resolvectl", "flush-caches", "tun0"], False),
    (["resolvectl", "revert", "../x"], False),
    (["sh", "revert", "tun0"], False),
    (["resolvectl", "revert", 5], False),
])
def test_the_helper_runs_only_resolved_pys_commands(monkeypatch, argv, ok):
    from appliance.host import resolvectl_helper as h
    monkeypatch.setattr(h, "tun_ifindex", lambda link: 7 if link == "tun0" else None)
    assert h.allowed(argv) is ok


def test_the_helper_refuses_a_link_that_is_not_a_tun_device():
    from appliance.host import resolvectl_helper as h
    assert not h.allowed(["resolvectl", "revert", "lo"])


def test_the_helper_answers_and_ends_when_the_client_closes_the_pipe():
    from appliance.host.resolvectl_helper import REFUSED, Helper
    helper = Helper()
    try:
        assert helper(["resolvectl", "revert", "lo"]) == REFUSED        # refused, nothing run
        assert helper(["rm", "-rf", "/"]) == REFUSED
    finally:
        helper.close()
    assert helper.p.returncode == 0


@pytest.mark.root
def test_mlock_beyond_the_memory_lock_limit_stops_the_run_with_the_reason(tmp_path):
    """As root without CAP_IPC_LOCK (bounding set) and a 64 KiB RLIMIT_MEMLOCK: `run` exits 1 before
    anything starts, saying why and what to do."""
    from lab.pki import make_pki
    from lab.tools import OUR_BIN
    pki = make_pki(tmp_path / "pki", ["client1"])
    cert, key = pki.clients["client1"]
    p = tmp_path / "p.ovpn"
    p.write_text(f"client\ndev tun\nremote 198.18.0.1\nca {pki.ca}\ncert {cert}\nkey {key}\nmlock\n")
    r = subprocess.run(["setpriv", "--bounding-set", "-ipc_lock", "prlimit", "--memlock=65536:65536", OUR_BIN, "run",
                        str(p)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "fatal: mlock: cannot lock the process memory" in r.stderr and "RLIMIT_MEMLOCK" in r.stderr, r.stderr
    assert "connecting" not in r.stderr
