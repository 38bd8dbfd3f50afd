"""image/build.py's package resolution (issue 10 parts 5 and 6), with apt's answers given: the kernel
source comes from the metapackage's dependency, exact versions come back, and an archive that cannot provide a
package stops the build with a message naming it. (The real archive is used by the image build
that tests/vm runs; this checks the decisions without network or root.)"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "image"))
import build  # noqa: E402  (image/build.py)

APT = {
    "linux-source": ("6.1.192-3", "linux-source-6.1 (= 6.1.192-3)"),
    "linux-source-6.1": ("6.1.192-3", "binutils, bzip2"),
    "libc6": ("2.36-9+deb12u14", "libgcc-s1"),
    "libcrypt1": ("1:4.4.33-2", ""),
}


@pytest.fixture
def apt(monkeypatch):
    known = dict(APT)
    updates = []
    monkeypatch.setattr(build, "_candidates", lambda ps: {p: known[p] for p in ps if p in known})
    monkeypatch.setattr(build.subprocess, "run", lambda cmd, **kw: updates.append(cmd))
    return known, updates


def test_kernel_from_the_metapackage_and_exact_versions(apt):
    v = build.resolve_packages(["libc6", "libcrypt1", "linux-source"])
    assert v == {"libc6": "2.36-9+deb12u14", "libcrypt1": "1:4.4.33-2", "linux-source-6.1": "6.1.192-3"}
    build.use_kernel(v)
    assert build.KERNEL_PKG == "linux-source-6.1"
    assert build._deb_name("libcrypt1", "1:4.4.33-2") == "libcrypt1_1%3a4.4.33-2_"


def test_archive_without_a_package_fails_clearly_after_one_update(apt):
    known, updates = apt
    with pytest.raises(build.ArchiveError) as e:
        build.resolve_packages(["libc6", "python3.99-minimal"])
    assert "cannot provide: python3.99-minimal" in str(e.value) and "sources.list" in str(e.value)
    assert updates == [["apt-get", "update", "-qq"]]


def test_metapackage_pointing_at_a_vanished_kernel_fails_clearly(apt):
    known, _ = apt
    del known["linux-source-6.1"]
    with pytest.raises(build.ArchiveError) as e:
        build.resolve_packages(["linux-source"])
    assert "linux-source-6.1 (= 6.1.192-3, from linux-source 6.1.192-3)" in str(e.value)


def test_metapackage_without_a_source_package_fails_clearly(apt):
    known, _ = apt
    known["linux-source"] = ("6.2", "linux-doc")
    with pytest.raises(build.ArchiveError) as e:
        build.resolve_packages(["linux-source"])
    assert "depends on no versioned kernel source package" in str(e.value)
