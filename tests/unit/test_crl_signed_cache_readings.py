"""A CRL signature verdict is kept for the reading it was worked out on, never for the next one
(openvpn/crl.py CrlChecker._signed_by). Since reload41 a reload's worker thread checks kept
clients against the reading the loop installed (CrlChecker.revoked refresh=False) while the
loop goes on installing newer ones: a verdict the worker worked out for the reading it took,
stored after the loop had swapped in the next, was read back as that next reading's -- a
forged CRL's "not signed" refusing everyone under a genuine new one (or a genuine CRL's "signed"
vouching for a forged one), until the reading after."""
from __future__ import annotations

import os

from cryptography.x509.oid import ExtendedKeyUsageOID

from appliance.certs import issue
from appliance.openvpn import crl as crl_mod
from appliance.openvpn.crl import CrlChecker, make_crl

CA = issue("Cache CA", None, None)
A = issue("alice", CA, ExtendedKeyUsageOID.CLIENT_AUTH)[0]
B = issue("bob", CA, ExtendedKeyUsageOID.CLIENT_AUTH)[0]


def _swap_while_worked_out(monkeypatch, f, c: CrlChecker, new: bytes) -> None:
    """The loop installs the file's next reading (`new`) while the first verdict is worked out."""
    real, swapped = crl_mod._signature_ok, []

    def loop_installs_meanwhile(crl, issuer):
        verdict = real(crl, issuer)
        if not swapped:
            swapped.append(True)
            f.write_bytes(new)
            os.utime(f, ns=(0, os.stat(f).st_mtime_ns + 10**9))
            c.refresh()
        return verdict
    monkeypatch.setattr(crl_mod, "_signature_ok", loop_installs_meanwhile)


def test_a_forged_readings_verdict_does_not_refuse_under_the_genuine_one_after_it(tmp_path, monkeypatch):
    f = tmp_path / "crl.pem"
    impostor = issue("Cache CA", None, None)            # the CA's name, another key
    f.write_bytes(make_crl(*impostor, []))
    c = CrlChecker("file", str(f))                      # no `ca`: every verdict is the checker's to keep
    _swap_while_worked_out(monkeypatch, f, c, make_crl(*CA, [B.serial_number]))
    assert "CRL signature failure" in c.revoked(A, [CA[0]], refresh=False)     # the worker's, on its reading
    assert c.loads == 2
    assert c.revoked(A, [CA[0]]) is None, "the forged reading's verdict refused under the genuine one"
    assert "CN=bob" in c.revoked(B, [CA[0]])


def test_a_genuine_readings_verdict_does_not_vouch_for_a_forged_one_after_it(tmp_path, monkeypatch):
    f = tmp_path / "crl.pem"
    f.write_bytes(make_crl(*CA, []))
    c = CrlChecker("file", str(f))
    impostor = issue("Cache CA", None, None)
    _swap_while_worked_out(monkeypatch, f, c, make_crl(*impostor, [A.serial_number]))
    assert c.revoked(A, [CA[0]], refresh=False) is None
    assert "CRL signature failure" in c.revoked(B, [CA[0]]), "a forged CRL taken as the CA's"
