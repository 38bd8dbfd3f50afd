"""The files a config writes while it runs (`status`, `ifconfig-pool-persist FILE N` with N > 0, a
`management PATH unix` socket), in the VM: the bundle points each at the VM's writable tmpfs
directory under its own name, and the VM's start-up (boot/init.py prepare_outputs) makes that
directory and refuses, with file:line, a written file left anywhere else. Without it a relative
path landed on the read-only config volume and Debian's /var/log/openvpn/... on a directory the
VM lacks: every write failed with a warning, and a management socket stopped the start."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.boot.init import prepare_outputs
from appliance.config.bundle import OUTPUT_DIR, collect, write_dir
from appliance.config.schema import load_appliance_config, validate_runtime
from appliance.openvpn.config import load_config
from appliance.openvpn.errors import ConfigError
from tests.unit.test_config_volume import REPO, _config, _server, pki  # noqa: F401 - pki is a fixture

DEBIAN = ("status /var/log/openvpn/openvpn-status.log\n"              # Debian's sample server.conf
          "ifconfig-pool-persist /var/log/openvpn/ipp.txt\n")


def _profile_lines(b, name: str = "server.ovpn") -> list[str]:
    return b.files[name].decode().splitlines()


def _options_from(b, tmp: Path):
    """The Options the VM gets: the bundle written to a directory of its own and loaded there."""
    target = tmp / "etc"
    write_dir(b, target)
    cfg = load_appliance_config(str(target / "appliance.toml"))
    return cfg, cfg.vpn_options


def test_debian_absolute_paths_go_to_the_vms_memory_under_their_names(tmp_path, pki):
    toml = _server(tmp_path, pki, DEBIAN)
    b = collect(toml)
    lines = _profile_lines(b)
    assert f"status {OUTPUT_DIR}/openvpn-status.log" in lines
    assert f"ifconfig-pool-persist {OUTPUT_DIR}/ipp.txt" in lines
    assert not any("/var/log" in n or n in ("ipp.txt", "openvpn-status.log") for n in b.files)   # not carried
    _, o = _options_from(b, tmp_path)
    assert o.status == (f"{OUTPUT_DIR}/openvpn-status.log", 60)
    assert o.ifconfig_pool_persist == (f"{OUTPUT_DIR}/ipp.txt", 600)
    where = str(toml.parent / "server.ovpn")
    assert b.output_lines() == [
        f"{OUTPUT_DIR}/openvpn-status.log <- status /var/log/openvpn/openvpn-status.log ({where}:10): "
        "written in the VM's memory, gone at power-off",
        f"{OUTPUT_DIR}/ipp.txt <- ifconfig-pool-persist /var/log/openvpn/ipp.txt ({where}:11): "
        "written in the VM's memory, gone at power-off"]


def test_relative_paths_no_longer_land_on_the_config_volume(tmp_path, pki):
    toml = _server(tmp_path, pki, "status openvpn-status.log 5\nifconfig-pool-persist logs/ipp.txt 30\n")
    (toml.parent / "logs").mkdir()
    (toml.parent / "logs/ipp.txt").write_text("bob,198.19.0.50,\n")     # the host server's own record
    b = collect(toml)
    assert "ipp.txt" not in b.files                    # N > 0: written by the server, not carried
    assert {f"status {OUTPUT_DIR}/openvpn-status.log 5", f"ifconfig-pool-persist {OUTPUT_DIR}/ipp.txt 30"} \
        <= set(_profile_lines(b))
    _, o = _options_from(b, tmp_path)
    assert o.status == (f"{OUTPUT_DIR}/openvpn-status.log", 5)
    assert o.ifconfig_pool_persist == (f"{OUTPUT_DIR}/ipp.txt", 30)


def test_the_same_base_name_twice_gets_two_files_and_the_same_file_one(tmp_path, pki):
    b = collect(_server(tmp_path, pki, "status /srv/a/x.log\nifconfig-pool-persist /srv/b/x.log 30\n"))
    _, o = _options_from(b, tmp_path)
    assert o.status[0] == f"{OUTPUT_DIR}/x.log"
    assert o.ifconfig_pool_persist[0] == f"{OUTPUT_DIR}/2-x.log"
    # Two directives naming one file write one file, on a host and in the VM.
    b = collect(_server(tmp_path, pki, "status /srv/a/x.log\nifconfig-pool-persist /srv/a/./x.log 30\n"))
    _, o = _options_from(b, tmp_path / "again")
    assert o.status[0] == o.ifconfig_pool_persist[0] == f"{OUTPUT_DIR}/x.log"


def test_a_client_profiles_status_file_too(tmp_path, pki):
    """Router mode writes OpenVPN's client status block (lan/status_line.py status_observers)."""
    toml = _config(tmp_path, pki, "status /var/log/openvpn/client.log 10\n")
    b = collect(toml)
    cfg, o = _options_from(b, tmp_path)
    assert o.status == (f"{OUTPUT_DIR}/client.log", 10)
    from appliance.gateway.client_status import ClientStatusFile
    from appliance.lan.status_line import status_observers
    assert [x.path for x in status_observers(cfg, []) if isinstance(x, ClientStatusFile)] == [f"{OUTPUT_DIR}/client.log"]


def test_a_path_on_the_config_volume_itself_is_pointed_away_too(tmp_path, pki):
    b = collect(_server(tmp_path, pki, "status /run/vpnconfig/status.log\n"))
    _, o = _options_from(b, tmp_path)
    assert o.status[0] == f"{OUTPUT_DIR}/status.log"


def test_a_read_only_pool_file_stays_an_input(tmp_path, pki):
    """N = 0: the operator's fixed addresses, read only: carried on the volume, not pointed at memory."""
    toml = _server(tmp_path, pki, "ifconfig-pool-persist ipp.txt 0\n")
    (toml.parent / "ipp.txt").write_text("bob,198.19.0.50,\n")
    b = collect(toml)
    assert b.files["ipp.txt"] == b"bob,198.19.0.50,\n" and b.outputs == []
    assert "ifconfig-pool-persist ipp.txt 0" in _profile_lines(b)
    _, o = _options_from(b, tmp_path)
    assert o.ifconfig_pool_persist == (str(tmp_path / "etc/ipp.txt"), 0)


def test_a_management_socket_is_made_in_memory(tmp_path, pki):
    """eduVPN's server configs name /run/openvpn-server/...sock: the VM has no such directory, and
    the bind failed the start."""
    b = collect(_server(tmp_path, pki, "management /run/openvpn-server/default-0.sock unix\n"))
    _, o = _options_from(b, tmp_path)
    assert o.management == (f"{OUTPUT_DIR}/default-0.sock", "unix", None)


def test_an_inline_profile_is_rewritten_on_the_tomls_lines(tmp_path, pki):
    toml = _server(tmp_path, pki, DEBIAN)
    prof = (toml.parent / "server.ovpn").read_text()
    toml.write_text(f'[wan]\nname = "eth0"\ndhcp = true\n\n[vpn]\nrole = "server"\ninline = \'\'\'\n{prof}\'\'\'\n')
    b = collect(toml)
    lines = b.files["appliance.toml"].decode().splitlines()
    assert lines[16:18] == [f"status {OUTPUT_DIR}/openvpn-status.log", f"ifconfig-pool-persist {OUTPUT_DIR}/ipp.txt"]
    assert [x.where for x in b.outputs] == [f"{toml}:17", f"{toml}:18"]
    _, o = _options_from(b, tmp_path)
    assert o.status[0] == f"{OUTPUT_DIR}/openvpn-status.log"


def test_only_the_path_is_rewritten_not_the_directive_nor_a_number_like_it(tmp_path, pki):
    """`status 20 20` (a file named 20, written every 20 s): the interval became a path too, and
    the VM refused the line; `status status` lost its directive."""
    toml = _server(tmp_path, pki, "status 20 20\nifconfig-pool-persist ifconfig-pool-persist 30\n")
    b = collect(toml)
    assert {f"status {OUTPUT_DIR}/20 20", f"ifconfig-pool-persist {OUTPUT_DIR}/ifconfig-pool-persist 30"} \
        <= set(_profile_lines(b))
    _, o = _options_from(b, tmp_path)
    assert o.status == (f"{OUTPUT_DIR}/20", 20)


def test_a_long_name_is_cut_so_the_line_stays_within_openvpns_limit(tmp_path, pki):
    """The line grows by the directory's length: a 200-character name on a line the lexer took
    would have made a line (255 bytes or more) the VM refused at boot."""
    name = "s" * 200 + ".log"
    b = collect(_server(tmp_path, pki, f"ifconfig-pool-persist {name} 86400\n"))
    _, o = _options_from(b, tmp_path)
    assert o.ifconfig_pool_persist == (f"{OUTPUT_DIR}/{name[-64:]}", 86400)
    assert max(len(line) for line in _profile_lines(b)) < 255


def test_hidden_or_odd_names_get_a_plain_one(tmp_path, pki):
    b = collect(_server(tmp_path, pki, "status ...\nifconfig-pool-persist \"a b;c.txt\" 5\n"
                                       "management .mgmt unix\n"))
    _, o = _options_from(b, tmp_path)
    assert o.status[0] == f"{OUTPUT_DIR}/file"            # never a hidden file, `.` or `..`
    assert o.management[0] == f"{OUTPUT_DIR}/mgmt"
    assert o.ifconfig_pool_persist[0] == f"{OUTPUT_DIR}/a_b_c.txt"


def test_the_profile_itself_keeps_its_paths_on_a_host(tmp_path, pki):
    toml = _server(tmp_path, pki, DEBIAN)
    before = (toml.parent / "server.ovpn").read_bytes()
    collect(toml)
    assert (toml.parent / "server.ovpn").read_bytes() == before
    o = load_config(str(toml.parent / "server.ovpn"))
    assert o.status == ("/var/log/openvpn/openvpn-status.log", 60)
    assert o.ifconfig_pool_persist == ("/var/log/openvpn/ipp.txt", 600)


def test_config_disk_says_where_each_written_file_goes(tmp_path, pki):
    toml = _server(tmp_path, pki, DEBIAN)
    r = subprocess.run([sys.executable, "-m", "appliance", "config-disk", str(toml), "-o", str(tmp_path / "c.img")],
                       capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (f"output: {OUTPUT_DIR}/ipp.txt <- ifconfig-pool-persist /var/log/openvpn/ipp.txt "
            f"({toml.parent / 'server.ovpn'}:11)") in r.stdout


@pytest.mark.parametrize("written", ["{out}/../x.log", "{out}/sub/x.log", "{out}", "{out}x/y.log"])
def test_a_hand_made_path_only_looking_like_the_directory_is_refused(tmp_path, pki, written):
    """The check is on the normalised path's directory: `..` out of it, a subdirectory the VM never
    makes, the directory itself, a sibling sharing its prefix."""
    out = tmp_path / "out"
    toml = _server(tmp_path, pki, f"status {written.format(out=out)}\n")
    with pytest.raises(ConfigError) as e:
        prepare_outputs(load_appliance_config(str(toml)), str(out))
    assert (e.value.line, e.value.directive) == (10, "status")
    toml = _server(tmp_path, pki, f"status {out}/./x.log\n")              # the same directory: taken
    assert prepare_outputs(load_appliance_config(str(toml)), str(out)) == [f"status {out}/./x.log: in the VM's memory"]


# ---------------------------------------------------------------- the VM's start-up, without QEMU
def test_the_vms_start_up_on_a_read_only_volume_makes_the_directory_and_says_so(tmp_path, pki):
    """As PID 1 does after choose_config: the bundle on a read-only directory (the volume), the
    TOML loaded from it, prepare_outputs, then the runtime check `run` makes."""
    out = tmp_path / "run/vpn-appliance"
    b = collect(_server(tmp_path, pki, DEBIAN + "management mgmt.sock unix\n"), output_dir=str(out))
    vol = tmp_path / "vol"
    write_dir(b, vol)
    for p in [vol, *vol.rglob("*")]:
        p.chmod(0o500 if p.is_dir() else 0o400)
    try:
        cfg = load_appliance_config(str(vol / "appliance.toml"))
        said = prepare_outputs(cfg, str(out))
        validate_runtime(cfg)
    finally:
        vol.chmod(0o700)
    assert stat.S_ISDIR(out.stat().st_mode) and out.stat().st_mode & 0o777 == 0o700
    assert said == [f"status {out}/openvpn-status.log: in the VM's memory",
                    f"ifconfig-pool-persist {out}/ipp.txt: addresses kept for this boot only (in memory, no "
                    "writable disk); `ifconfig-pool-persist FILE 0` or a ccd `ifconfig-push` fixes them across boots",
                    f"management {out}/mgmt.sock: in the VM's memory"]
    assert prepare_outputs(cfg, str(out)) == said           # again (a directory already there): the same


def test_a_hand_made_volume_writing_elsewhere_stops_the_boot_with_file_line(tmp_path, pki):
    """A config volume not written by config-disk keeps the paths as written: refused before start,
    each at its line, instead of a warning at every write."""
    toml = _server(tmp_path, pki, "status openvpn-status.log\nifconfig-pool-persist /var/log/openvpn/ipp.txt 60\n"
                                  "ifconfig-pool-persist ipp-fixed.txt 0\n")
    cfg = load_appliance_config(str(toml))
    with pytest.raises(ConfigError) as e:
        prepare_outputs(cfg, str(tmp_path / "out"))
    prof = toml.parent / "server.ovpn"
    assert str(e.value).splitlines() == [
        f"{prof}:10: status: {toml.parent}/openvpn-status.log: the VM writes files only in {tmp_path}/out (in "
        "memory: it has no writable disk and its config volume is read-only); `vpn-appliance config-disk` writes "
        "the volume with this line pointed there"]
    # The later pool line (N = 0: only read) replaced the earlier one: nothing else is written.
    toml = _server(tmp_path, pki, "ifconfig-pool-persist /var/log/openvpn/ipp.txt 60\n"
                                  "management /run/openvpn-server/x.sock unix\n")
    with pytest.raises(ConfigError) as e:
        prepare_outputs(load_appliance_config(str(toml)), str(tmp_path / "out"))
    assert [x.split(": ")[0:2] for x in str(e.value).splitlines()] == [
        [f"{prof}:10", "ifconfig-pool-persist"], [f"{prof}:11", "management"]]


# PID 1 itself (boot/init.py main), run as the init of a PID and mount namespace of its own, as far
# as it goes without a VM: its mounts (private to the namespace), the config chosen and loaded from a
# read-only bundle, prepare_outputs, the lines said, then, instead of the appliance, a write where
# the server would write, and its power-off (reboot() in a PID namespace ends only that namespace).
_PID1 = r"""
import os, sys
if os.getpid() != 1:        # never the machine's own init: power_off() would power the machine off
    sys.exit(3)
import appliance.boot.init as init
init.CONFIG = sys.argv[1]   # the baked config's place (no volume labelled VPNCONFIG is attached)
# A checkout under /tmp (CI's fresh clone) and its venv must stay visible: PID 1's tmpfs there would
# hide the modules it imports later (ImportError at its first lazy import).
_keep = [os.path.realpath(p) for p in (os.getcwd(), sys.prefix)]
_real_mount = init.mount


def mount(src, target, fstype, *args):
    if any(k == target or k.startswith(target.rstrip("/") + "/") for k in _keep):
        return
    _real_mount(src, target, fstype, *args)


init.mount = mount


def start(path):
    from appliance.config.schema import load_appliance_config
    from appliance.gateway.status import write_file
    o = load_appliance_config(path).vpn_options
    write_file(o.status[0], ["written"])
    print("wrote", o.status[0], oct(os.stat(os.path.dirname(o.status[0])).st_mode & 0o7777),
          open(o.status[0]).read().strip(), flush=True)
    return 0


init.start_appliance = start
init.main()
"""


def _run_pid1(vol: Path) -> subprocess.CompletedProcess:
    ro = f'mount --bind {vol} {vol} && mount -o remount,bind,ro {vol} && exec "$@"'
    return subprocess.run(["unshare", "--pid", "--fork", "--mount", "--propagation", "private", "sh", "-c", ro, "sh",
                           sys.executable, "-c", _PID1, str(vol / "appliance.toml")],
                          capture_output=True, text=True, timeout=120, cwd=REPO)


@pytest.fixture
def volume_dir():
    """Not under /tmp or /run: PID 1 mounts a tmpfs on each (in its own mount namespace)."""
    import tempfile
    d = Path(tempfile.mkdtemp(prefix="vmout-vol-", dir="/var/tmp"))
    yield d
    subprocess.run(["chmod", "-R", "u+w", str(d)], check=False)
    import shutil
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.root
def test_pid1_starts_a_bundled_config_with_its_files_in_memory(tmp_path, pki, volume_dir):
    write_dir(collect(_server(tmp_path, pki, DEBIAN)), volume_dir)
    r = _run_pid1(volume_dir)
    out = r.stdout
    assert f"config {volume_dir}/appliance.toml: hostname" in out, out + r.stderr
    assert f"status {OUTPUT_DIR}/openvpn-status.log: in the VM's memory" in out
    assert f"ifconfig-pool-persist {OUTPUT_DIR}/ipp.txt: addresses kept for this boot only" in out
    assert f"wrote {OUTPUT_DIR}/openvpn-status.log 0o700 written" in out
    assert "appliance stopped (status 0): powering off" in out and "FATAL" not in out
    assert not Path(OUTPUT_DIR, "openvpn-status.log").exists()       # the namespace's /run, not the host's


@pytest.mark.root
def test_pid1_stops_a_hand_made_volume_writing_on_itself_with_file_line(tmp_path, pki, volume_dir):
    toml = _server(tmp_path, pki, "status openvpn-status.log\n")
    for p in [*toml.parent.iterdir(), pki / "ca.crt", pki / "client.crt", pki / "client.key"]:
        (volume_dir / p.name).write_bytes(p.read_bytes().replace(str(pki).encode() + b"/", b""))
    r = _run_pid1(volume_dir)
    assert (f"FATAL: {volume_dir}/server.ovpn:10: status: {volume_dir}/openvpn-status.log: the VM writes files "
            f"only in {OUTPUT_DIR}") in r.stdout, r.stdout + r.stderr
    assert "configuration error: powering off" in r.stdout and "wrote" not in r.stdout
