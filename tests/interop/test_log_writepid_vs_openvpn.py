"""`log`, `log-append` and `writepid` on a host run, our client beside Debian's OpenVPN 2.6 client,
against OpenVPN 2.6's server, in namespaces. Both put their whole output in the file (nothing on
stdout/stderr), `log` truncating what was there and `log-append` keeping it, and write their PID
to the writepid file, removed at exit. Ours accepted the three and wrote nothing: the log stayed on
stderr and a supervisor looking for the PID file found none.
"""
from __future__ import annotations

import pytest

from lab.configs import client_profile, server_config
from lab.netns import Lab, wait_for_text

UP = {"ours": "tunnel up", "openvpn": "Initialization Sequence Completed"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp=tmp_path_factory.mktemp("lab")) as lab:
        srv = lab.openvpn(lab.srv, server_config(lab.pki, "udp"), "srv-logfile")
        try:
            yield lab
        finally:
            srv.stop(5)


@pytest.mark.parametrize("directive", ["log", "log-append"])
@pytest.mark.parametrize("kind", ["openvpn", "ours"])
def test_the_log_and_the_pid_go_to_the_files_named(lab, procs, kind, directive):
    logf = lab.tmp / f"{kind}-{directive}.log"
    logf.write_text("a line from before\n")
    pidf = lab.tmp / f"{kind}-{directive}.pid"
    start = lab.ours if kind == "ours" else lab.openvpn
    cli = start(lab.cli, client_profile(lab.pki, "udp", extra=f"{directive} {logf}\nwritepid {pidf}\n"),
                f"cli-{kind}-{directive}", wait=0)
    procs.append(cli)
    assert wait_for_text(logf, UP[kind], 30), f"not up in the log file:\n{logf.read_text()[-3000:]}\n{cli.log()[-2000:]}"
    text = logf.read_text()
    assert text.startswith("a line from before\n") == (directive == "log-append"), text[:300]
    assert UP[kind] not in cli.log(), "the log went to stdout/stderr too"
    assert pidf.read_text() == f"{cli.p.pid}\n"
    assert cli.stop(10) is not None
    assert not pidf.exists(), "the PID file stayed after the exit"
    if kind == "ours":
        assert "stopping" in logf.read_text(), "the last lines did not reach the log file"
