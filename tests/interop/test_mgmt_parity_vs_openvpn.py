"""The server's management interface line for line beside Debian's OpenVPN 2.6 (helper mgmt41):
the same config (tun, UDP) with one Debian client connected, then the same byte sequences --
odd and missing parameters, client-auth's block without management-client-auth, the commands
of a client's interface, case, NUL/CR/tab bytes, two commands in one write, a 305-byte line,
`help`, lines past 2.6's 1,024-byte buffer, `kill` of IPv6 and odd IPv4 forms --
to each management socket; the replies, masked where they must differ (times, counters, PIDs,
version text), are compared with lab/mgmt_parity.py's diff(). The full sequence (tap, a
client's interface, management-client-auth, misbehaving tools) is that module run as a program."""
from __future__ import annotations

import pytest

from lab.mgmt_parity import SERVER_STEPS, diff, server_transcript, squeeze
from lab.netns import Lab

# A subset of lab/mgmt_parity.py's steps that each answer at once (a step without an answer
# waits out its read limit) and none that the harness documents as differing (bytecount's
# timing, the tail of a long client-deny). helper mgmt42: help's list, lines past 2.6's 1,024-byte
# buffer (20 kB, 1,023, 1,024, 1,025 bytes) and `kill` of IPv6 and odd IPv4 forms.
PICKED = ["version", "pid", "state all", "state foo", "status 2", "status 4", "status x", "load-stats", "log",
          "log foo", "echo", "echo on x", "echo off", "bytecount", "bytecount x", "bytecount 0", "hold foo",
          "signal", "kill", "kill foo:5", "kill 1.2.3.4:x", "kill 1.2.3.4:5", "client-kill", "client-kill x",
          "client-kill 99", "client-auth 99 1 + lines + END", "client-deny 99 1 no",
          "client-pending-auth 99 1 x 30", "env-filter 9", "env-filter", "username Auth u", "needok x ok",
          "remote ACCEPT", "cr-response abc", "auth-retry foo", "test 3", "FOO", "Pid", "NUL inside", "CR LF",
          "two commands in one write", "tab separated", "long line (305 bytes)", "foo",
          "help", "very long line (20 kB)", "line of 1023 bytes", "line of 1024 bytes, then pid",
          "line of 1025 bytes, then pid", "kill 2001:db8::1:5", "kill ::1", "kill 1.2.3:5", "kill 1.2.3.4:5:6",
          "pkcs11-id-get 3",
          # review44c: a name past man_kill's 128-byte field (ours killed by its first 127 bytes)
          "kill " + "a" * 127 + "xyz", "kill " + "1" * 129 + ":5", "kill " + "1" * 130 + ":5",
          # host44: verdicts for the connected client without management-client-auth, and its row after
          "client-deny 0 1 x", "client-deny 0 0 with reasons", "client-deny 0 2 x", "client-auth-nt 0 1",
          "client-auth 0 0 + lines + END", "status 2 after the verdicts",
          "hold on, hold, hold off", "mute -1, mute 7, mute", "verb 16, verb 99...9, verb", "nclients"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(clients=["client1"], tmp=tmp_path_factory.mktemp("mgmtparity")) as lab:
        yield lab


def test_server_management_replies_equal_openvpns(lab):
    steps = [st for st in SERVER_STEPS if st[0] in PICKED]
    assert len(steps) == len(PICKED), sorted(set(PICKED) - {st[0] for st in steps})
    theirs = server_transcript(lab, False, steps=steps, tail=[], clients=1, quiet=0.1)
    ours = server_transcript(lab, True, steps=steps, tail=[], clients=1, quiet=0.1)
    # Debian's answers are what this test is about: each step was answered (none swallowed by a
    # block still open), the odd ones with their refusals.
    t = dict(theirs)
    assert all(t[label] for label in PICKED), [label for label in PICKED if not t[label]]
    assert squeeze(t["client-auth 99 1 + lines + END"]) == ["ERROR: client-auth command failed"]
    assert squeeze(t["state foo"]) == ["ERROR: state parameter must be 'on' or 'off' or some number n or 'all'"]
    # 2.6 says SUCCESS to a verdict nothing reads, and the client stays (host44)
    assert squeeze(t["client-deny 0 1 x"]) == ["SUCCESS: client-deny command succeeded"]
    assert squeeze(t["client-deny 0 2 x"]) == ["ERROR: client-deny command failed"]
    assert any(x.startswith("CLIENT_LIST,client1,") for x in t["status 2 after the verdicts"])
    assert squeeze(t["hold on, hold, hold off"])[1] == "SUCCESS: hold=1"
    problems = diff(theirs, ours)
    assert not problems, "\n".join(problems)
