"""management-client-user / management-client-group (OpenVPN 2.6, manage.c
man_verify_unix_peer_uid_gid): a unix-socket management interface serves only a peer whose uid
(and primary gid) the kernel reports (SO_PEERCRED) as the configured ones; anyone else's
connection is closed before the greeting, logged at a limited rate. Root is no exception, as
there. Before, both lines failed the start as unknown directives, so an operator's access rule
could not be written at all; on TCP they are refused at their line, as by OpenVPN."""
from __future__ import annotations

import grp
import os
import pwd
import time

import pytest

from appliance.gateway.loop import Pump, SelectorWaiter
from appliance.gateway.management import Management
from appliance.openvpn.config import ConfigError, parse_config
from tests.gateway.conftest import client_conf, server_conf
from tests.gateway.test_management import FakeOps, _client, _closed, _read_until

OTHER_UID = pwd.getpwnam("nobody").pw_uid


def _mgmt(tmp_path, ids):
    pump = Pump(time.monotonic, SelectorWaiter())
    path = str(tmp_path / "m.sock")
    return Management((path, "unix", None), pump, FakeOps(), peer_ids=ids), pump, path


def _served(pump, path) -> bool:
    s = _client(path)
    try:
        return ">INFO:OpenVPN Management Interface" in _read_until(pump, s, lambda t: "\r\n" in t, limit=2)
    finally:
        s.close()


@pytest.mark.parametrize("ids,served", [
    ((os.getuid(), None), True), ((None, os.getgid()), True), ((os.getuid(), os.getgid()), True),
    ((OTHER_UID, None), False), ((None, os.getgid() + 12345), False), ((os.getuid(), os.getgid() + 1), False),
])
def test_only_the_configured_user_and_group_are_served(tmp_path, caplog, ids, served):
    m, pump, path = _mgmt(tmp_path, ids)
    try:
        assert _served(pump, path) is served
        if not served:
            assert "unix domain socket client connection rejected" in caplog.text
            assert not m.conns
    finally:
        m.close()


def test_a_refused_flood_is_one_log_line(tmp_path, caplog):
    m, pump, path = _mgmt(tmp_path, (OTHER_UID, None))
    try:
        for _ in range(40):
            s = _client(path)
            assert any(_closed(pump, s) for _ in range(50))
            s.close()
        assert caplog.text.count("connection rejected") == 1, caplog.text
    finally:
        m.close()


def test_a_reload_narrowing_access_closes_open_connections_it_refuses(tmp_path):
    m, pump, path = _mgmt(tmp_path, (None, None))
    try:
        s = _client(path)
        assert "\r\n" in _read_until(pump, s, lambda t: "\r\n" in t, limit=2)
        m.set_peer_ids((OTHER_UID, None))
        assert any(_closed(pump, s) for _ in range(50)), "a connection the new rule refuses stayed open"
        assert not m.conns
    finally:
        m.close()


def test_config_errors_at_the_line(pki, tmp_path):
    sock = tmp_path / "m.sock"
    ok = parse_config(server_conf(pki, extra=f"management {sock} unix\nmanagement-client-user root\n"
                                             f"management-client-group {grp.getgrgid(0).gr_name}\n"), "/mem/s.conf")
    assert (ok.management_client_user, ok.management_client_group) == (0, 0)
    ok = parse_config(client_conf(pki, extra=f"management {sock} unix\nmanagement-client-user nobody\n"), "/mem/c.ovpn")
    assert ok.management_client_user == OTHER_UID
    for extra, want in (
            ("management 127.0.0.1 7505\nmanagement-client-user root\n", "can only be used with a unix-socket"),
            ("management-client-group root\n", "can only be used with a unix-socket"),
            (f"management {sock} unix\nmanagement-client-user no-such-user-here\n", "no user named"),
            (f"management {sock} unix\nmanagement-client-group no-such-group-here\n", "no group named")):
        with pytest.raises(ConfigError, match=want):
            parse_config(server_conf(pki, extra=extra), "/mem/s.conf")
