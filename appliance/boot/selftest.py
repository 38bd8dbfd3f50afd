"""Boot self-test printed on the serial console: crypto, TUN, netlink, nft, decompression. Why: proves
the trimmed image still has everything the appliance needs, before any network is involved."""
from __future__ import annotations

import subprocess
from typing import Callable


def run(say: Callable[[str], None]) -> bool:
    ok = True

    def check(name: str, fn) -> None:
        nonlocal ok
        try:
            detail = fn()
            say(f"selftest {name}: ok{f' ({detail})' if detail else ''}")
        except Exception as e:  # noqa: BLE001 - report every failing part
            ok = False
            say(f"selftest {name}: FAIL {type(e).__name__}: {e}")

    def aead() -> str:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
        for cls in (AESGCM, ChaCha20Poly1305):
            k = cls(bytes(32))
            assert k.decrypt(bytes(12), k.encrypt(bytes(12), b"x" * 100, b"a"), b"a") == b"x" * 100
        return "AES-256-GCM, CHACHA20-POLY1305"

    def tls() -> str:
        from OpenSSL import SSL
        return SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()

    def tun() -> str:
        from appliance.tun.device import TunDevice
        t = TunDevice("selftest%d", vnet_hdr=True)
        name = t.name
        t.close()
        return name

    def netlink() -> str:
        from pyroute2 import IPRoute
        with IPRoute() as ipr:
            return ", ".join(l.get_attr("IFLA_IFNAME") for l in ipr.get_links())

    def nft() -> str:
        return subprocess.run(["nft", "--version"], capture_output=True, text=True, check=True).stdout.strip()

    def engine() -> str:
        from appliance.bench import connected_pair
        c, s = connected_pair("AES-256-GCM")
        assert len(s.receive(c.encrypt(b"\x45" + bytes(99)), 1.0)) == 1
        return "in-memory handshake and data"

    def native() -> str:
        # The image ships the data path's C modules (image/build.py builds them): each must load here.
        from appliance import native as n
        if n.pure_forced():
            return f"pure Python ({n.PURE_ENV} is set)"
        missing = [m for m, ok in n.status().items() if not ok]
        assert not missing, f"compiled modules not loading: {', '.join(missing)}"
        return ", ".join(n.MODULES) or "none"

    def compression() -> str:
        # comp-lzo / compress lzo|lz4|lz4-v2 (openvpn/compression.py): python-lzo (built by image/build.py
        # against liblzo2, which the image carries) and lz4.block must load and decompress in the VM.
        import lz4.block
        import lzo
        from appliance.openvpn.compression import LZO_COMPRESS_BYTE, V2_INDICATOR, V2_LZ4, decompress
        data = b"\x45" + bytes(1199)
        lzo_pt = bytes([LZO_COMPRESS_BYTE]) + lzo.compress(data, 1, False)
        lz4_pt = bytes([V2_INDICATOR, V2_LZ4]) + lz4.block.compress(data, store_size=False)
        assert decompress("lzo", lzo_pt, 1600) == data and decompress("lz4-v2", lz4_pt, 1600) == data
        v = lzo.LZO_VERSION_STRING
        return f"LZO {v.decode() if isinstance(v, bytes) else v}, LZ4 {lz4.library_version_string()}"

    for name, fn in (("aead", aead), ("tls", tls), ("tun", tun), ("netlink", netlink), ("nft", nft),
                     ("native", native), ("compression", compression), ("engine", engine)):
        check(name, fn)
    return ok
