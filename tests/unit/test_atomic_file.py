"""Status and pool files are replaced without following a link planted at the temporary name
(`PATH.tmpPID` is predictable; the writer may be root)."""
from __future__ import annotations

import os

from appliance.atomic_file import replace_file
from appliance.gateway.status import write_file
from appliance.openvpn import poolfile


def _plant(tmp_path, target_name: str):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / f"{target_name}.tmp{os.getpid()}"
    link.symlink_to(victim)
    return victim, link


def test_a_link_at_the_temporary_name_is_not_followed(tmp_path):
    victim, link = _plant(tmp_path, "status.log")
    write_file(str(tmp_path / "status.log"), ["TITLE,x", "END"])
    assert victim.read_text() == "precious\n"
    assert (tmp_path / "status.log").read_text() == "TITLE,x\nEND\n"
    assert not (tmp_path / "status.log").is_symlink() and not os.path.lexists(link)


def test_pool_file_too(tmp_path):
    victim, _ = _plant(tmp_path, "ipp.txt")
    poolfile.write(str(tmp_path / "ipp.txt"), {"client1": ("198.18.8.2", None)})
    assert victim.read_text() == "precious\n"
    assert (tmp_path / "ipp.txt").read_text() == "client1,198.18.8.2,\n"


def test_a_leftover_temporary_file_is_replaced_and_nothing_stays_behind(tmp_path):
    target = tmp_path / "f"
    (tmp_path / f"f.tmp{os.getpid()}").write_text("stale")
    replace_file(str(target), b"new\n")
    assert target.read_bytes() == b"new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
    replace_file(str(target), b"newer\n")
    assert target.read_bytes() == b"newer\n" and oct(target.stat().st_mode & 0o777) == "0o644"


def test_a_pool_file_line_is_ended_by_lf_only(tmp_path):
    """ifconfig-pool-persist writes each client's common name; a CA-issued name holding U+2028
    or U+0085 (remap_name keeps them, as OpenVPN's does) must come back as that one name, not as
    a line of its own naming another client's address at the next start."""
    path = str(tmp_path / "ipp.txt")
    names = {f"mallory{sep}alice": (f"198.18.8.{i}", None) for i, sep in enumerate(("\u2028", "\u2029", "\u0085"), 2)}
    poolfile.write(path, names)
    assert poolfile.read(path) == names
