"""The children we start as root with `python -m` (the resolvectl helper; the server's TUN set-up
child was one until helper startup47 set the TUN up in the server's own process): `-m` puts the
working directory first on sys.path, so root started in a directory another user can write (/tmp,
a shared checkout) would import that user's json.py. They run with -P."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def planted(tmp_path, monkeypatch) -> Path:
    """Modules the child imports, planted in the working directory; each leaves a marker."""
    marker = tmp_path / "imported"
    for mod in ("json", "subprocess", "re", "ipaddress"):
        (tmp_path / f"{mod}.py").write_text(f"open({str(marker)!r}, 'a').write({mod!r})\n"
                                            "raise SystemExit('planted module ran')\n")
    monkeypatch.chdir(tmp_path)
    return marker


def test_the_resolvectl_helper_does_not_import_from_the_working_directory(planted):
    from appliance.host import resolvectl_helper as h
    helper = h.Helper()
    try:
        assert helper(["resolvectl", "revert", "lo"]) == h.REFUSED
    finally:
        helper.close()
    assert not planted.exists() and helper.p.returncode == 0

