"""The root resolvectl helper attacked from the dropped client's side (host/resolvectl_helper.py).

The client keeps CAP_NET_ADMIN after `user nobody`, so a compromised client can name its TUN
devices as it likes and write anything into the helper's pipe. What must hold: the helper runs
only resolvectl dns/domain/default-route/revert on a TUN link, never dies or grows on input,
and answers every request."""
from __future__ import annotations

import io
import json
import os
import select
import time

import pytest

from appliance.host import resolvectl_helper as h


@pytest.fixture
def sysfs(tmp_path, monkeypatch):
    """A /sys/class/net with TUN devices named as a hostile client with CAP_NET_ADMIN could
    name them (`-ieth0` is an option to resolvectl, `2` its ifindex syntax), one plain link."""
    def link(name: str, index: int, tun: bool = True) -> None:
        d = tmp_path / name
        d.mkdir()
        (d / "ifindex").write_text(f"{index}\n")
        if tun:
            (d / "tun_flags").write_text("0x1001\n")
    link("tun0", 7)
    link("-ieth0", 8)
    link("2", 9)
    link("eth0", 2, tun=False)
    monkeypatch.setattr(h, "SYS_NET", str(tmp_path))
    return tmp_path


def _req(argv) -> bytes:
    return json.dumps(argv).encode() + b"\n"


def test_resolvectl_gets_the_checked_tun_devices_ifindex_not_its_name(sysfs):
    assert h.command(_req(["resolvectl", "dns", "tun0", "198.18.100.1"])) == ["resolvectl", "dns", "7", "198.18.100.1"]
    # A TUN named `2` is ifindex 9 to resolvectl, not the (non-TUN) link with ifindex 2.
    assert h.command(_req(["resolvectl", "revert", "2"])) == ["resolvectl", "revert", "9"]


@pytest.mark.parametrize("argv", [
    ["resolvectl", "revert", "-ieth0"],                   # resolvectl would revert eth0
    ["resolvectl", "revert", "eth0"],                     # not a TUN device
    ["resolvectl", "revert", "tun0/../eth0"],
    ["resolvectl", "revert", "--"],
    ["resolvectl", "dns", "tun0", "fe80::1%eth0"],        # server bound to another interface
    ["resolvectl", "dns", "tun0", "::1%\x00"],            # NUL: subprocess would raise
    ["resolvectl", "dns", "tun0", "198.18.100.1\x00"],
    ["resolvectl", "domain", "tun0", "-i", "eth0"],
    ["resolvectl", "domain", "tun0", "--", "x"],
])
def test_option_and_link_tricks_are_refused(sysfs, argv):
    assert h.command(_req(argv)) is None


@pytest.mark.parametrize("line", [
    b"[" * (h.MAX_LINE - 1) + b"\n",                      # RecursionError in json, not ValueError
    b'{"a":' * 1500 + b"\n",
    b"\xff\xfe\x00[\n",                                    # not UTF-8
    b'["resolvectl", "revert", "tun0"' + b"\x80" + b"]\n",
    b"null\n", b"42\n", b"\n", b"",
])
def test_malformed_requests_are_refused_without_raising(sysfs, line):
    assert h.command(line) is None


def test_a_line_without_end_is_read_in_bounded_pieces_and_refused():
    sizes: list[int] = []

    class Pipe(io.BytesIO):
        def readline(self, size=-1):
            assert 0 < size <= h.MAX_LINE + 1, "unbounded read"
            out = super().readline(size)
            sizes.append(len(out))
            return out

    good = _req(["resolvectl", "revert", "tun0"])
    stream = Pipe(b"x" * (40 * h.MAX_LINE) + b"\n" + good + b"y" * (3 * h.MAX_LINE))
    assert h.read_line(stream) == b""                     # the long line: dropped whole
    assert h.read_line(stream) == good                    # the next one is read as it was sent
    assert h.read_line(stream) == b""                     # unterminated at EOF, too long
    assert h.read_line(stream) is None
    assert max(sizes) <= h.MAX_LINE + 1


def _vm_hwm_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(ln.split()[1]) for ln in f if ln.startswith("VmHWM:"))


def test_the_helper_process_survives_hostile_input_and_stays_small():
    """The real helper process: a JSON bomb, a NUL in an address, non-UTF-8, 64 MiB without a
    newline; each is answered with a refusal, the helper's peak memory stays far below what it
    was sent, it still answers afterwards and ends when the pipe closes."""
    helper = h.Helper()
    try:
        p = helper.p
        assert p.stdin is not None and p.stdout is not None
        for line in (b"[" * 5000 + b"\n", _req(["resolvectl", "dns", "lo", "::1%\x00"]), b"\xff\xff\n"):
            p.stdin.write(line)
            p.stdin.flush()
            assert p.stdout.readline() == b"%d\n" % h.REFUSED
        before = _vm_hwm_kib(p.pid)
        chunk = b"z" * (1 << 20)
        for _ in range(64):
            p.stdin.write(chunk)
        p.stdin.write(b"\n")
        p.stdin.flush()
        deadline = time.monotonic() + 60
        while not select.select([p.stdout], [], [], 1)[0]:
            assert time.monotonic() < deadline, "no answer to the long line"
        assert p.stdout.readline() == b"%d\n" % h.REFUSED
        assert _vm_hwm_kib(p.pid) - before < 8 * 1024, "the helper held the long line"
        assert helper(["resolvectl", "revert", "lo"]) == h.REFUSED      # still serving
    finally:
        helper.close()
    assert helper.p.returncode == 0


def test_tun_ifindex_on_this_host_refuses_what_is_not_a_tun_device():
    assert h.tun_ifindex("lo") is None
    assert h.tun_ifindex("..") is None and h.tun_ifindex("") is None
    assert os.path.isdir("/sys/class/net/lo")


_KERNEL_CHECK = """
import fcntl, json, os, struct
from appliance.host import resolvectl_helper as h
fds = []
for name in (b"-ieth0", b"2", b"tun0"):          # names a client with CAP_NET_ADMIN can give its TUNs
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, 0x400454CA, struct.pack("16sH", name, 0x1001))   # TUNSETIFF, IFF_TUN | IFF_NO_PI
    fds.append(fd)
index = {n: int(open(f"/sys/class/net/{n}/ifindex").read()) for n in ("2", "tun0")}
print(json.dumps({"index": index, "2": h.command(b'["resolvectl", "revert", "2"]'),
                  "-ieth0": h.command(b'["resolvectl", "revert", "-ieth0"]'),
                  "lo": h.command(b'["resolvectl", "revert", "lo"]')}))
"""


@pytest.mark.root
@pytest.mark.netns
def test_real_tun_devices_named_as_options_or_numbers(tmp_path):
    """In a namespace of our own: TUN devices really can be named `-ieth0` and `2`; the helper
    refuses the first and hands resolvectl the second's true ifindex, never `2`."""
    import secrets
    import subprocess
    import sys

    from lab.netns import Netns                 # registered: a killed run's namespace goes at the next run
    ns = Netns(f"vpa-a5-{secrets.token_hex(3)}")
    try:
        r = subprocess.run(["ip", "netns", "exec", ns.name, sys.executable, "-c", _KERNEL_CHECK], capture_output=True,
                           text=True, timeout=60, cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
        assert r.returncode == 0, r.stderr
        out = json.loads(r.stdout)
        assert out["-ieth0"] is None and out["lo"] is None
        assert out["2"] == ["resolvectl", "revert", str(out["index"]["2"])] and out["index"]["2"] != 2
    finally:
        ns.delete()


def test_the_client_side_survives_a_dead_helper(caplog):
    """Should the helper die anyway (OOM killer, an admin's kill), the client's calls fail with
    127 and a warning, and closing still works: no exception reaches the host-DNS worker."""
    helper = h.Helper()
    helper.p.kill()
    helper.p.wait(10)
    assert helper(["resolvectl", "revert", "tun0"]) == 127
    assert "the resolvectl helper is gone" in caplog.text
    helper.close()

