"""The auth-pam root helper itself (host/pam_helper.py, started by host/pam_client.py), run for
real with a PAM service no host has (libpam's `other` then): what the server's side -- which
drops root and is hostile by assumption -- or a program a PAM module runs can do to it."""
from __future__ import annotations

import os

import pytest

from appliance.host import pam_helper
from appliance.host.pam_client import PamHelper

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/fdinfo"), reason="needs /proc")


@pytest.fixture
def helper():
    try:
        h = PamHelper("vpn-appliance-test-no-such-service", (), 5.0)
    except OSError as e:
        pytest.skip(f"no libpam: {e}")
    yield h
    h.close()


def _socket_fd(pid: int) -> int:
    (fd,) = [int(f) for f in os.listdir(f"/proc/{pid}/fd") if os.readlink(f"/proc/{pid}/fd/{f}").startswith("socket:")]
    return fd


def test_its_socket_is_not_passed_to_programs_it_runs(helper):
    """The socket came inheritable (pass_fds); a program a PAM module execs (pam_exec, a
    module's own helper) kept it, and could send the server OK for any check under way."""
    fd = _socket_fd(helper.proc.pid)
    info = open(f"/proc/{helper.proc.pid}/fdinfo/{fd}").read()
    flags = int(next(line for line in info.splitlines() if line.startswith("flags")).split()[1], 8)
    assert flags & os.O_CLOEXEC


def test_an_empty_message_is_malformed_not_the_end(helper):
    """SOCK_SEQPACKET carries empty messages; one ended the helper like an EOF."""
    helper.sock.send(b"")
    helper.sock.settimeout(5)
    helper.sock.send(b"V" + (7).to_bytes(8, "big") + b"\xff")     # malformed, its id readable
    assert pam_helper.decode_reply(helper.sock.recv(512)) == (7, pam_helper.ERROR, "malformed request")
    assert helper.proc.poll() is None


def test_the_servers_end_still_ends_it(helper):
    helper.sock.send(b"")                       # (an empty message before it: not the end)
    helper.close()
    assert helper.proc.returncode == 0          # exited by itself at EOF, not killed by close()


def test_its_service_and_pairs_are_not_in_its_command_line():
    """/proc/PID/cmdline is every local user's to read; the plugin line's pairs are the config's."""
    try:
        h = PamHelper("vpn-appliance-test-svc", (("pin", "SECRET-LITERAL"),), 5.0)
    except OSError as e:
        pytest.skip(f"no libpam: {e}")
    try:
        argv = open(f"/proc/{h.proc.pid}/cmdline", "rb").read()
        assert b"SECRET-LITERAL" not in argv and b"vpn-appliance-test-svc" not in argv
        assert open(f"/proc/{h.proc.pid}/fdinfo/0").read() and os.readlink(f"/proc/{h.proc.pid}/fd/0") == "/dev/null"
    finally:
        h.close()


def _children(pid: int) -> list[int]:
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            out += [int(x) for x in open(f"/proc/{pid}/task/{task}/children").read().split()]
        except OSError:
            pass
    return out


def test_its_checks_process_killed_is_started_again(helper):
    """The server dropped root and cannot start the helper again: a crash of its checks' loop
    refused every later login. The helper (still root) starts the loop again; checks answer."""
    import signal
    import time
    from appliance.host.pam_rules import Creds
    assert helper.check(Creds(b"u", b"p", b"", b"", b"")) [0] in (pam_helper.REFUSED, pam_helper.ERROR)
    (loop,) = _children(helper.proc.pid)
    os.kill(loop, signal.SIGKILL)
    end = time.monotonic() + 10
    while time.monotonic() < end and _children(helper.proc.pid) in ([], [loop]):
        time.sleep(0.05)
    assert _children(helper.proc.pid) and _children(helper.proc.pid) != [loop]
    from appliance.host.pam_client import RESTARTED
    status, words = helper.check(Creds(b"u", b"p", b"", b"", b""))
    if (status, words) == (pam_helper.ERROR, RESTARTED):
        # Sent after the new loop appeared but before the helper's notice of it came back: the
        # notice answers every check waiting then (a temporary refusal; a client tries again).
        status, words = helper.check(Creds(b"u", b"p", b"", b"", b""))
    assert status == pam_helper.REFUSED, words          # a check answered again, by PAM
    helper.close()
    assert helper.proc.returncode == 0


def test_a_check_under_way_when_the_checks_process_ends_is_answered_at_once(helper):
    """The checks' process ended (killed, out of memory) with a login's PAM check under way: its
    answer was lost, and the server's worker waited the check's limit and slack (hand-window + 5
    s: 65 s by default) before the temporary refusal -- with 8 such workers, a minute with no
    login decided at all. The helper now says it started the loop again, and each check waiting
    then gets its temporary refusal at once (the client retries)."""
    import signal
    import threading
    import time

    from appliance.host.pam_client import RESTARTED, UNANSWERED
    from appliance.host.pam_rules import Creds
    got: list = []
    t = threading.Thread(target=lambda: got.append(helper.check(Creds(b"u", b"p", b"", b"", b""))))
    end = time.monotonic() + 10
    while time.monotonic() < end and not _children(helper.proc.pid):
        time.sleep(0.01)
    (loop,) = _children(helper.proc.pid)
    t.start()
    while time.monotonic() < end and not _children(loop):        # the check's own process (PAM)
        time.sleep(0.005)
    assert _children(loop), "the check ended before it could be interrupted"
    os.kill(loop, signal.SIGKILL)
    t.join(20)
    assert got == [(pam_helper.ERROR, RESTARTED)] and RESTARTED in UNANSWERED
    status, words = helper.check(Creds(b"u", b"p", b"", b"", b""))
    assert status == pam_helper.REFUSED, words          # the next is decided by PAM again
