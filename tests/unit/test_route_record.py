"""The record of the client's routes outside its TUN (appliance/router/route_record.py): what a
dead run recorded is removed at the next start, and nothing else. The routes themselves in a
namespace: tests/interop/test_wan_routes_after_kill.py."""
from __future__ import annotations

import json
import os

import pytest

from appliance.router import route_record
from appliance.router.route_record import RouteRecord, _start_time

HOST_ROUTE = {"dst": "198.18.60.1", "prefixlen": 32, "oif": 2, "gateway": "198.18.0.1", "priority": None,
              "rtype": 1}


class FakeRtnl:
    """Stands in for the netlink socket: records the deletes asked for."""
    deleted: list[dict] = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def route_del(self, **spec):
        FakeRtnl.deleted.append(spec)


@pytest.fixture
def rec(tmp_path, monkeypatch):
    FakeRtnl.deleted = []
    monkeypatch.setattr(route_record, "Rtnl", FakeRtnl)
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o755)
    return RouteRecord(str(tmp_path / "profile.ovpn"), str(run_dir))


def _leave(rec: RouteRecord, pid: int, start, routes) -> None:
    with open(rec.path, "w") as f:
        json.dump({"pid": pid, "start": start, "routes": routes}, f)


def test_a_dead_runs_routes_are_removed_and_the_record_is_ours(rec):
    _leave(rec, 999_999_999, "1", [HOST_ROUTE, {**HOST_ROUTE, "dst": "not-an-ip"},
                                   {**HOST_ROUTE, "prefixlen": 99}, "junk"])
    rec.take_over()
    assert FakeRtnl.deleted == [HOST_ROUTE]            # the malformed entries are not acted on
    assert os.path.getsize(rec.path) == 0
    rec.write([HOST_ROUTE])
    assert json.loads(open(rec.path).read())["routes"] == [HOST_ROUTE]
    rec.close()
    assert not os.path.exists(rec.path)


def test_a_live_runs_routes_are_left_alone(rec):
    parent = os.getppid()
    _leave(rec, parent, _start_time(parent), [HOST_ROUTE])
    rec.take_over()
    assert FakeRtnl.deleted == []
    assert rec.fd is None and json.loads(open(rec.path).read())["routes"] == [HOST_ROUTE]


def test_a_run_directory_others_can_write_is_not_trusted(rec):
    _leave(rec, 999_999_999, "1", [HOST_ROUTE])
    os.chmod(rec.run_dir, 0o777)
    rec.take_over()
    assert FakeRtnl.deleted == [] and rec.fd is None


def test_a_file_that_is_no_record_is_ignored(rec):
    with open(rec.path, "w") as f:
        f.write("[1, 2")
    rec.take_over()
    assert FakeRtnl.deleted == [] and rec.fd is not None
    rec.close()


def test_a_second_run_of_the_profile_leaves_the_live_runs_record_alone(tmp_path, monkeypatch):
    """review11c: a run with no route outside its TUN yet keeps an empty record; a second run of
    the same profile took that file too, and its writes replaced the first run's routes (killed
    then, the first run's routes stayed for good)."""
    FakeRtnl.deleted = []
    monkeypatch.setattr(route_record, "Rtnl", FakeRtnl)
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o755)
    first = RouteRecord(str(tmp_path / "profile.ovpn"), str(run_dir))
    second = RouteRecord(str(tmp_path / "profile.ovpn"), str(run_dir))
    first.take_over()
    second.take_over()
    first.write([HOST_ROUTE])
    second.write([])
    second.close()
    with open(first.path) as f:
        assert json.load(f)["routes"] == [HOST_ROUTE]
    assert FakeRtnl.deleted == []
    first.close()
    assert not os.path.exists(first.path)


def test_a_record_of_as_many_routes_as_a_server_may_push_is_read_back(tmp_path, monkeypatch):
    """review11c: a server may push up to MAX_PUSHED_OPTIONS routes, `net_gateway` ones
    included, which go outside the TUN; a record of ~600 of them passed 64 KiB and the next run
    took it for not ours: the routes, around the tunnel, stayed for good."""
    from appliance.openvpn.keymethod import MAX_PUSHED_OPTIONS
    FakeRtnl.deleted = []
    monkeypatch.setattr(route_record, "Rtnl", FakeRtnl)
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o755)
    specs = [{"dst": f"2001:db8:ffff:ffff:ffff:ffff:ffff:{i:x}", "prefixlen": 128, "oif": 2147483647,
              "gateway": "fe80::ffff:ffff:ffff:ffff", "priority": 2147483647, "rtype": 1}
             for i in range(MAX_PUSHED_OPTIONS + 16)]
    killed = RouteRecord(str(tmp_path / "profile.ovpn"), str(run_dir))
    killed.take_over()
    killed.write(specs)
    os.close(killed.fd)                         # killed: its lock goes, its record stays
    RouteRecord(str(tmp_path / "profile.ovpn"), str(run_dir)).take_over()
    assert len(FakeRtnl.deleted) == len(specs)
