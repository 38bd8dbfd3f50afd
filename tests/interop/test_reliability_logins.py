"""A burst of 50 password logins at once (issue 8, lab/reliability/fleet.py): every client gets in.
Every run makes its own namespaces (198.18.0.0/15) and removes them with its processes. The five
test_reliability_*.py files were one (~400 s on one pytest-xdist worker, which runs whole files);
split, both workers take them, longest first (tests/conftest.py, LONG_FILES)."""
from __future__ import annotations

from lab.reliability.fleet import Fleet


def test_a_burst_of_password_logins_all_get_in():
    import subprocess

    from lab.tools import OUR_BIN
    n = 50
    with Fleet(n) as fleet:
        pw = subprocess.run([OUR_BIN, "passwd", "good"], input="right\n", capture_output=True, text=True,
                            check=True).stdout
        passdb = fleet.lab.write("passdb", pw)
        creds = fleet.lab.write("creds", "good\nright\n")
        srv = fleet.start_server(extra=f"auth-user-pass-verify {passdb} passdb\n")
        for i in range(n):
            fleet.start_client(i, extra=f"auth-user-pass {creds}\n")
        up = fleet.wait_all_up(list(range(n)), 120)
        refused = srv.log().count("too many checks queued")
    assert len(up) == n, f"{len(up)}/{n} clients up; queue refusals logged: {refused}"
