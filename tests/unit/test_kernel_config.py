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
