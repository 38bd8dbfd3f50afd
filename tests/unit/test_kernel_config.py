"""image/kernel.py's config check, without compiling: Kconfig drops an option it cannot honour
(missing dependency, misspelt or renamed name) without a word, so the build compares the resolved
.config with image/kernel.config line by line and stops naming file:line. Also the cache key: the
kernel's bytes depend on source version, config, compiler and timestamp, so each must change it."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "image"))
import kernel  # noqa: E402  (image/kernel.py)


def test_the_fragment_parses_and_asks_for_what_the_appliance_uses():
    f = kernel.read_fragment()
    # a few the boot would fail without (init's mounts, the config volume, the tunnel, the rules)
    for opt in ("CONFIG_BINFMT_SCRIPT", "CONFIG_DEVTMPFS", "CONFIG_SQUASHFS_ZSTD", "CONFIG_VFAT_FS", "CONFIG_TUN",
                "CONFIG_VIRTIO_NET", "CONFIG_NFT_MASQ", "CONFIG_NFT_CT", "CONFIG_EFI_STUB", "CONFIG_RD_ZSTD"):
        assert f[opt][0] == "y", opt
    assert f["CONFIG_MODULES"][0] is None


def test_unmet_lines_are_named_with_file_and_line(tmp_path):
    frag = tmp_path / "k.config"
    frag.write_text("# why\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"ascii\"\nCONFIG_D=y\n")
    f = kernel.read_fragment(frag)
    dot = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"ascii\"\n# CONFIG_D is not set\n"
    assert kernel.unmet(f, dot, frag) == [f"{frag}:5: CONFIG_D=y asked, the kernel's config has n"]
    assert kernel.unmet(f, dot.replace("# CONFIG_B is not set", "CONFIG_B=y"), frag)[0].startswith(f"{frag}:3: CONFIG_B=n")
    assert kernel.unmet(f, "CONFIG_A=y\nCONFIG_C=\"utf8\"\nCONFIG_D=y\n", frag) == [
        f"{frag}:4: CONFIG_C=\"ascii\" asked, the kernel's config has \"utf8\""]


def test_a_line_that_is_not_kconfig_is_refused(tmp_path):
    frag = tmp_path / "k.config"
    frag.write_text("CONFIG_A=y\nCONFIG_B y\n")
    with pytest.raises(kernel.KernelBuildError, match=r"k.config:2: not a Kconfig line"):
        kernel.read_fragment(frag)


def test_cache_key_changes_with_every_input():
    base = ("6.1.192-3", b"CONFIG_A=y\n", "gcc (Debian 12.2.0-14) 12.2.0", 1764177120)
    k = kernel.cache_key(*base)
    assert kernel.cache_key(*base) == k
    for i, other in enumerate(("6.1.192-4", b"CONFIG_A=n\n", "gcc (Debian 12.2.0-15) 12.2.0", 1764177121)):
        assert kernel.cache_key(*base[:i], other, *base[i + 1:]) != k


# Every word the rendered rulesets use, with the kernel options it needs in the appliance VM
# (None: nothing beyond nf_tables itself). A word not listed fails the test below: say here
# which option the new expression needs and add it to image/kernel.config. Why: the host's
# kernel (Debian's, where the unit and interop tests run) has everything, the VM's only what
# kernel.config asks for, so a rule using something new breaks only the VM boot -- nft refuses
# the whole ruleset and the appliance stops (the conntrack mark of mark_inside did exactly that).
NFT_WORDS = {
    "ct": ("CONFIG_NF_CONNTRACK", "CONFIG_NFT_CT"), "state": None, "new": None, "established": None,
    "related": None, "invalid": None,
    "mark": ("CONFIG_NF_CONNTRACK_MARK",), "set": None, "or": None, "and": None,
    "masquerade": ("CONFIG_NF_NAT", "CONFIG_NFT_NAT", "CONFIG_NFT_MASQ"), "nat": ("CONFIG_NFT_NAT",),
    "srcnat": ("CONFIG_NFT_NAT",), "postrouting": None,
    "reject": ("CONFIG_NFT_REJECT", "CONFIG_NFT_REJECT_INET"), "with": None, "icmpx": None,
    "admin": None, "prohibited": None, "port": None, "unreachable": None, "tcp": None, "reset": None,
    "table": None, "inet": None, "ip": None, "ip6": None, "delete": None, "chain": None, "type": None,
    "filter": None, "hook": None, "prerouting": None, "forward": None, "output": None, "input": None,
    "priority": None, "raw": None, "mangle": None, "policy": None, "accept": None, "drop": None,
    "iifname": None, "oifname": None, "saddr": None, "daddr": None, "meta": None, "nfproto": None,
    "ipv4": None, "ipv6": None, "l4proto": None, "udp": None, "sport": None, "dport": None,
    "icmp": None, "icmpv6": None, "counter": None, "comment": None,
    "nd": None, "neighbor": None, "router": None, "solicit": None, "advert": None, "mld2": None,
    "listener": None, "report": None,
    # our own table and chain names
    "vpnappliance": None, "vpnappliance_nat": None, "vpnappliance_nat6": None, "mark_inside": None,
}


def _rulesets() -> list[str]:
    from appliance.router.killswitch import Endpoint, render_router
    srv = [Endpoint("198.18.0.1", 1194, "udp"), Endpoint("198.18.0.7", 443, "tcp")]
    lan_nets = ["198.18.50.1/24", "fd18:50::1/64", "198.18.60.0/24"]
    out = []
    for role in ("client", "server"):
        for lan in ("eth1", None):
            for nat in (True, False):
                for wan6 in (True, False):
                    out.append(render_router("eth0", "tun0", lan, nat, role, srv if role == "client" else (),
                                             (1194, "udp") if role == "server" else None, wan6,
                                             lan_nets if lan else None))
    out.append(render_router("eth0", "tun0", None, True, "server", (), (443, "tcp"), True, None))
    out.append(render_router("eth0", "tun0", "eth1", True, "server", (), (1194, "udp"), False, lan_nets,
                             management=("eth1", 7505)))          # management on the LAN address
    return out


def test_every_nft_expression_the_rulesets_use_is_in_the_vm_kernel():
    import re
    frag = kernel.read_fragment()
    words = set()
    for text in _rulesets():
        text = re.sub(r'"[^"]*"|0x[0-9a-f]+', " ", text)          # names, comments, numbers
        words |= {w for w in re.findall(r"[a-z][a-z0-9_]*", text) if not re.fullmatch(r"[a-f0-9]+", w)}
    unknown = sorted(words - set(NFT_WORDS))
    assert not unknown, f"nft words with no kernel option on record (add them to NFT_WORDS): {unknown}"
    missing = sorted({opt for w in words for opt in (NFT_WORDS[w] or ()) if frag.get(opt, (None,))[0] != "y"})
    assert not missing, f"image/kernel.config lacks what the rulesets use: {missing}"


def test_a_build_that_waited_for_a_compile_under_way_takes_its_result(tmp_path, monkeypatch):
    """`make test` starts the kernel's compile early in the background (Makefile kernel-early); the
    image build then waits on the build directory's lock. When the lock comes free with the bzImage
    in the cache, it must take it, not compile the ~1300 objects a second time."""
    import fcntl
    import threading
    import time

    monkeypatch.setattr(kernel, "BUILD_DIR", tmp_path / "build")
    calls: list = []
    monkeypatch.setattr(kernel, "_run", lambda cmd, **kw: calls.append(cmd))
    slot = tmp_path / "cache" / "kernel" / "key"
    (tmp_path / "build").mkdir()
    logged: list[str] = []
    with open(tmp_path / "build" / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)          # the compile under way
        t = threading.Thread(target=kernel._compile, args=(tmp_path / "x.deb", "./usr/src/linux-source-6.1.tar.xz",
                                                           {}, 0, slot, logged.append))
        t.start()
        for _ in range(200):                     # at most 10 s for the thread to reach the lock
            if any("waiting for the compile under way" in m for m in logged):
                break
            time.sleep(0.05)
        assert any("waiting for the compile under way" in m for m in logged), logged
        slot.mkdir(parents=True)
        (slot / "bzImage").write_bytes(b"kernel")
    t.join(10)
    assert not t.is_alive()
    assert calls == [], "compiled again although the cache had the kernel"
    assert (slot / "bzImage").read_bytes() == b"kernel"


def test_a_compile_records_its_phases_and_objects_and_fills_the_cache(tmp_path, monkeypatch):
    """_compile's own steps with the commands stood in for (the real compile takes minutes): the
    cache slot gets bzImage, config and a build-info naming each phase's seconds and the objects."""
    monkeypatch.setattr(kernel, "BUILD_DIR", tmp_path / "build")
    tree = tmp_path / "build" / "linux-source-6.1"

    def run(cmd, **kw):
        if cmd[0] == "bash":                      # the unpack
            (tree / "arch/x86/boot").mkdir(parents=True)
        elif "allnoconfig" in cmd:
            (tree / ".config").write_text("CONFIG_TUN=y\n")
        elif "bzImage" in cmd:
            (tree / "arch/x86/boot/bzImage").write_bytes(b"kernel")
            (tree / "a.o").write_bytes(b"")
    monkeypatch.setattr(kernel, "_run", run)
    slot = tmp_path / "cache" / "kernel" / "key"
    logged: list[str] = []
    kernel._compile(tmp_path / "x.deb", "./usr/src/linux-source-6.1.tar.xz", {"CONFIG_TUN": ("y", 1)}, 0, slot,
                    logged.append)
    assert (slot / "bzImage").read_bytes() == b"kernel"
    assert (slot / "config").read_text() == "CONFIG_TUN=y\n"
    info = (slot / "build-info").read_text()
    for phase in ("unpack", "allnoconfig", "make"):
        assert f"{phase} " in info and " s CPU" in info, info
    assert "1 objects" in info, info
    assert not tree.exists(), "the tree (~1.5 GB when real) is removed once the cache has the result"
