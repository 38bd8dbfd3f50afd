"""The ACPI power button (QEMU's `system_powerdown` on its QMP monitor: what `virsh shutdown`, Proxmox's
"Shutdown" and a host shutting its guests down press) shuts the appliance VM down cleanly: the
appliance stops as at SIGTERM on a host (a client's explicit-exit-notify reaches the server) and the
VM powers off by itself, instead of the host waiting out its timeout and killing it. A second
press while the appliance is still stopping powers off at once. And what the README promises
literally: `virsh shutdown` of the shipped libvirt domain ends in "shut off".

    [VM: the default image] eth0 ── tap ── br ── 198.18.0.1 [wan ns: Debian's OpenVPN 2.6 server]
"""
from __future__ import annotations

import subprocess
import time

import pytest

from lab.configs import client_profile, server_config
from lab.libvirt import Libvirtd, adapt_domain
from lab.netns import Proc
from lab.router_lab import start_far_side
from lab.vm import (OUT, accel, appliance_toml, boot, config_volume, inline_server_config, lab_pki, qmp, vm_topology,
                    wait_ping)
from tests.vm.test_image import build
from tests.vm.test_libvirt import NAME, SHIPPED, _config_volume, _wait_console

# From the press to QEMU's own exit: the appliance's stop, its clean-up, power off. What a host
# waits before it gives up is far longer (libvirt-guests' SHUTDOWN_TIMEOUT: 300 s by default).
WITHIN = 20.0
SERVER_HEARD = "exit message received by peer"     # OpenVPN 2.6's server on a client's EXIT


@pytest.fixture(scope="module")
def pki():
    build(OUT)          # the default image (and the default lab PKI in the build cache)
    return lab_pki()


def press(sock) -> float:
    assert qmp(sock, "system_powerdown") == {"return": {}}
    return time.monotonic()


def exits_within(q: Proc, seconds: float) -> float | None:
    """Seconds until QEMU exits by itself (the guest powered off), None if it is still running."""
    t0 = time.monotonic()
    try:
        q.p.wait(seconds)
    except subprocess.TimeoutExpired:
        return None
    return time.monotonic() - t0


def test_power_button_stops_the_default_image_and_powers_off(pki, tmp_path, figure):
    """The default image with its baked config (a router connecting to the lab's server)."""
    with vm_topology(tmp_path) as t:
        def start(ns, argv, name):
            p = Proc(ns, argv, tmp_path / f"{name}.log")
            t["procs"].append(p)
            return p
        start_far_side(t["wan"], tmp_path, start, pki)
        sock = tmp_path / "qmp.sock"
        q = boot(t, OUT, monitor=sock)
        assert q.wait_for("tunnel up", 150), q.log()[-4000:]
        assert "power button /dev/input/event" in q.log(), q.log()[-4000:]
        t0 = press(sock)
        took = exits_within(q, WITHIN)
        log = q.log()
        assert took is not None, f"still running {WITHIN:.0f} s after the press:\n{log[-4000:]}"
        took = time.monotonic() - t0
        figure(f"power button to VM off (default image, tunnel up): {took:.1f} s")
        stop = log[log.index("power button: stopping"):]
        # the gateway's graceful stop (as SIGTERM on a host), the clean-up, then PID 1's power off
        assert "stopping" in stop.split("power button: stopping", 1)[1], stop[-3000:]
        assert "appliance stopped (status 0): powering off" in stop, stop[-3000:]
        assert "pressed again" not in log
        assert q.p.returncode == 0


def test_client_tells_the_server_then_a_second_press_powers_off_at_once(pki, tmp_path, figure):
    """A client with `explicit-exit-notify 30`: the first press sends the exit notification (the
    server drops the client at once), and the VM would wait 30 s as OpenVPN does; the second press
    powers off without waiting."""
    prof = client_profile(pki, "udp", None, "tls-crypt", inline=True, extra="explicit-exit-notify 30\n")
    toml = tmp_path / "een.toml"
    toml.write_text(appliance_toml("client", prof, lan=False))
    vol = config_volume(toml, tmp_path / "config.img")
    with vm_topology(tmp_path, with_lan=False) as t:
        cfg = tmp_path / "server.conf"
        cfg.write_text(server_config(pki, "udp", None, "tls-crypt"))
        srv = Proc(t["wan"], ["openvpn", "--config", str(cfg)], tmp_path / "server.log")
        t["procs"].append(srv)
        assert srv.wait_for("Initialization Sequence Completed", 20)
        sock = tmp_path / "qmp.sock"
        q = boot(t, OUT, with_lan=False, config_disk=vol, monitor=sock)
        assert q.wait_for("tunnel up", 150), q.log()[-4000:]
        assert srv.wait_for("Peer Connection Initiated", 20), srv.log()[-3000:]
        assert SERVER_HEARD not in srv.log()
        press(sock)
        assert q.wait_for("power button: stopping", 10), q.log()[-4000:]
        assert q.wait_for(r"exit notification sent, exiting in 30 s \(explicit-exit-notify\)", 10), q.log()[-4000:]
        assert srv.wait_for(SERVER_HEARD, 10), srv.log()[-3000:]
        assert q.alive(), "the first press waits explicit-exit-notify's 30 s, as OpenVPN does"
        t1 = press(sock)
        took = exits_within(q, 10)
        log = q.log()
        assert took is not None, f"still running 10 s after the second press:\n{log[-4000:]}"
        took = time.monotonic() - t1
        figure(f"second power button press to VM off (client in explicit-exit-notify's wait): {took:.2f} s")
        assert "power button pressed again: powering off now" in log, log[-3000:]
        assert "appliance stopped" not in log, "powered off at once, not after the appliance's wait"


def test_server_tells_its_clients_to_restart(pki, tmp_path, figure):
    """The VM as a server with `explicit-exit-notify 1`: the press sends RESTART to its clients, as
    SIGTERM does on a host (Debian's OpenVPN client restarts at once instead of waiting out its
    ping-restart), and the VM powers off once the client has acknowledged."""
    toml = tmp_path / "server.toml"
    toml.write_text(appliance_toml("server", inline_server_config(pki, "udp") + "explicit-exit-notify 1\n",
                                   lan=False))
    vol = config_volume(toml, tmp_path / "config.img")
    with vm_topology(tmp_path, with_lan=False) as t:
        sock = tmp_path / "qmp.sock"
        q = boot(t, OUT, with_lan=False, config_disk=vol, monitor=sock)
        assert q.wait_for("listening on UDP", 150), q.log()[-4000:]
        cfg = tmp_path / "client.ovpn"
        cfg.write_text(client_profile(pki, "udp", None, "tls-crypt", remotes=[("198.18.0.2", 1194, "udp")]))
        cli = Proc(t["wan"], ["openvpn", "--config", str(cfg)], tmp_path / "client.log")
        t["procs"].append(cli)
        assert cli.wait_for("Initialization Sequence Completed", 60), cli.log()[-3000:] + q.log()[-3000:]
        assert wait_ping(t["wan"], "198.19.0.1", 20), q.log()[-3000:]
        t0 = press(sock)
        took = exits_within(q, WITHIN)
        log = q.log()
        assert took is not None, f"still running {WITHIN:.0f} s after the press:\n{log[-4000:]}"
        figure(f"power button to VM off (server, one client told to restart): {time.monotonic() - t0:.1f} s")
        stop = log[log.index("power button: stopping"):]
        assert "stopping: told 1 clients to restart" in stop, stop[-3000:]
        assert "appliance stopped (status 0): powering off" in stop, stop[-3000:]
        assert cli.wait_for(r"SIGUSR1\[soft,server-pushed-connection-reset\] received, process restarting", 5), \
            cli.log()[-2000:]

def test_virsh_shutdown_of_the_shipped_domain_ends_shut_off(pki, tmp_path, figure):
    """The shipped domain (qemu/vpn-appliance.xml, the disk image under UEFI) on a real libvirtd, as
    tests/vm/test_libvirt.py boots it: `virsh shutdown` (libvirt's ACPI mode: no guest agent) once
    the tunnel is up, and the domain is "shut off" within WITHIN, by the appliance's own stop."""
    cfg_img = _config_volume(tmp_path)
    disk = tmp_path / "vpn-appliance.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(OUT / "disk.qcow2"),
                    str(disk)], check=True, timeout=30)
    console = tmp_path / "console.log"
    a = accel(OUT)
    with vm_topology(tmp_path) as t:
        cfg = tmp_path / "server.conf"
        cfg.write_text(server_config(pki, "udp", None, "tls-crypt"))
        ovpn = Proc(t["wan"], ["openvpn", "--config", str(cfg)], tmp_path / "server.log")
        t["procs"].append(ovpn)
        with Libvirtd(t["vm"], tmp_path / "libvirtd.log") as lv:
            domain = tmp_path / "domain.xml"
            domain.write_text(adapt_domain(SHIPPED.read_text(), disk=disk, config_disk=cfg_img, bridges=("brw", "brl"),
                                           console_log=console, domain_type="kvm" if a == "kvm" else "qemu"))
            assert ovpn.wait_for("Initialization Sequence Completed", 20), ovpn.log()
            lv.virsh("define", str(domain))
            lv.virsh("start", NAME)
            up = _wait_console(console, "tunnel up", 240)
            assert up, console.read_text(errors="replace")[-4000:] if console.exists() else lv.qemu_log(NAME)[-2000:]
            t0 = time.monotonic()
            lv.virsh("shutdown", NAME)
            state = ""
            while time.monotonic() - t0 < WITHIN:
                state = lv.virsh("domstate", NAME).stdout.strip()
                if state == "shut off":
                    break
                time.sleep(0.2)
            took = time.monotonic() - t0
            text = console.read_text(errors="replace")
            assert state == "shut off", f"{state!r} {WITHIN:.0f} s after virsh shutdown:\n{text[-4000:]}"
            figure(f"libvirt: virsh shutdown to shut off (tunnel up, under {a}): {took:.1f} s")
            assert "power button: stopping" in text, text[-3000:]
            assert "appliance stopped (status 0): powering off" in text, text[-3000:]
