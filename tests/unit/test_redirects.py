"""ICMP redirects neither taken nor sent on the appliance's NICs (router/nics.py refuse_redirects,
net41): which values are written, that the undo gives each old value back, and that a host
refusing a write costs a warning, not the start. The kernel's side -- a spoofed redirect taken
with Linux's defaults and refused after -- is tests/interop/test_wan_redirects_and_hints.py."""
from __future__ import annotations

from pathlib import Path

from appliance.router import nics
from appliance.router.nics import Undo, refuse_redirects


def _conf(tmp: Path, names: list[str], value: str = "1") -> tuple[str, str]:
    conf4, conf6 = tmp / "ipv4", tmp / "ipv6"
    for dev in ("all", "default", "wan0", "lan0"):
        for n in names:
            (conf4 / dev).mkdir(parents=True, exist_ok=True)
            (conf4 / dev / n).write_text(value + "\n")
        (conf6 / dev).mkdir(parents=True, exist_ok=True)
        (conf6 / dev / "accept_redirects").write_text(value + "\n")
    return str(conf4), str(conf6)


def _read(p: Path) -> str:
    return p.read_text().strip()


def test_redirects_are_refused_on_the_nic_and_in_all_and_restored_on_exit(tmp_path):
    names = ["accept_redirects", "secure_redirects", "send_redirects"]
    conf4, conf6 = _conf(tmp_path, names)
    undo = Undo()
    refuse_redirects("wan0", undo, conf4, conf6)
    refuse_redirects("lan0", undo, conf4, conf6)
    for n in names:
        # `default` too (atk42): the VPN's TUN/TAP, made later, takes its values from there
        for dev in ("all", "default", "wan0", "lan0"):
            assert _read(tmp_path / "ipv4" / dev / n) == "0", (dev, n)
    for dev in ("default", "wan0", "lan0"):
        assert _read(tmp_path / "ipv6" / dev / "accept_redirects") == "0"
    assert _read(tmp_path / "ipv6" / "all" / "accept_redirects") == "1"   # IPv6 reads the device's only
    undo.run()
    for n in names:
        for dev in ("all", "default", "wan0", "lan0"):
            assert _read(tmp_path / "ipv4" / dev / n) == "1", (dev, n)
    for dev in ("default", "wan0"):
        assert _read(tmp_path / "ipv6" / dev / "accept_redirects") == "1"


def test_values_already_off_are_left_and_not_undone(tmp_path):
    conf4, conf6 = _conf(tmp_path, ["accept_redirects", "secure_redirects", "send_redirects"], value="0")
    undo = Undo()
    refuse_redirects("wan0", undo, conf4, conf6)
    assert undo.steps == []


def test_a_host_that_refuses_is_a_warning_not_a_failed_start(tmp_path, caplog):
    conf4, conf6 = str(tmp_path / "none4"), str(tmp_path / "none6")      # no IPv6, no such files
    undo = Undo()
    refuse_redirects("wan0", undo, conf4, conf6)
    assert undo.steps == [] and any("cannot set" in r.getMessage() for r in caplog.records)


class _Ipr:
    def __init__(self, events: list) -> None:
        self.events = events

    def __enter__(self):
        return self

    def __exit__(self, *a) -> None:
        pass

    def link_lookup(self, ifname: str):
        return [7]

    def link(self, cmd: str, index: int, state: str) -> None:
        self.events.append(("link", state))

    def addr(self, cmd: str, **kw) -> None:
        self.events.append(("addr", kw["address"]))


def test_configure_nic_refuses_redirects_on_both_nics_before_their_links_go_up(monkeypatch):
    """The one place: configure_nic (the WAN's and the LAN's), before the link is up -- no
    redirect taken in between -- and before forwarding goes on (run_toml calls it later)."""
    import ipaddress

    from appliance.config.schema import Lan, Wan
    events: list = []
    monkeypatch.setattr(nics, "IPRoute", lambda: _Ipr(events))
    monkeypatch.setattr(nics, "find_link", lambda name, mac: (7, name))
    monkeypatch.setattr(nics, "_sysctl", lambda path, value, undo, required=False: events.append((path, value)) or True)
    monkeypatch.setattr(nics, "lan_address6", lambda lan, ifname: None)
    monkeypatch.setattr(nics, "add_lan_routes", lambda lan, ifname, undo, address6=None: None)
    monkeypatch.setattr(nics, "keep_static_wan", lambda wan, ifname, undo: None)
    wan = Wan(name="wan41", address=ipaddress.IPv4Interface("198.18.0.2/24"))
    lan = Lan(name="lan41", address=ipaddress.IPv4Interface("198.18.50.1/24"))
    for nic, name in ((wan, "wan41"), (lan, "lan41")):
        events.clear()
        assert nics.configure_nic(nic, nics.Undo()) == name
        up = events.index(("link", "up"))
        for path in (f"{nics.IP4_CONF}/all/accept_redirects", f"{nics.IP4_CONF}/default/accept_redirects",
                     f"{nics.IP4_CONF}/{name}/accept_redirects",
                     f"{nics.IP4_CONF}/{name}/secure_redirects", f"{nics.IP4_CONF}/{name}/send_redirects",
                     f"{nics.IP6_CONF}/{name}/accept_redirects"):
            assert events.index((path, "0")) < up, (path, events)


def test_a_nics_own_switches_come_back_even_when_defaults_restore_no_longer_reaches_it(tmp_path, monkeypatch):
    # The kernel copied `default`'s 0 to a NIC that had never been written, and the address
    # configure_nic added marked its values as written: `default`'s restore left it at 0.
    # keep_nic_redirects writes back what the NIC had before the run, last; a NIC gone is skipped.
    names = list(nics.REDIRECT_SWITCHES4)
    conf4, conf6 = _conf(tmp_path, names)
    links = {"wan0": (2, "wan0"), "lan0": (3, "lan0")}

    def find_link(name=None, mac=None):
        if name not in links:
            raise RuntimeError("no such NIC")
        return links[name]
    monkeypatch.setattr(nics, "find_link", find_link)
    monkeypatch.setattr(nics, "link_name", {2: "wan0", 3: "lan0"}.__getitem__)

    class Nic:
        def __init__(self, name):
            self.name, self.mac = name, None
    undo = Undo()
    nics.keep_nic_redirects((Nic("wan0"), Nic("lan0"), Nic("gone0"), None), undo, conf4=conf4)
    refuse_redirects("wan0", undo, conf4, conf6)
    for n in names:           # what the kernel did behind our back: default's copy, now sticky
        Path(conf4, "lan0", n).write_text("0\n")
    (Path(conf4) / "wan0" / "send_redirects").write_text("0\n")
    undo.run()
    assert {f"{d}/{n}": _read(Path(conf4, d, n)) for d in ("all", "default", "wan0", "lan0") for n in names} \
        == {f"{d}/{n}": "1" for d in ("all", "default", "wan0", "lan0") for n in names}


def test_a_nic_renamed_during_the_run_gets_its_switches_back_and_one_that_took_its_name_is_left(
        tmp_path, monkeypatch):
    """review45c: the values were put back by name. The WAN NIC renamed during the run (wan0 ->
    wan1) kept the 0s, and a NIC that took the name wan0 meanwhile had them overwritten; each NIC
    is found again by its index now. One whose index is gone is skipped."""
    names = list(nics.REDIRECT_SWITCHES4)
    conf4, _ = _conf(tmp_path, names)
    monkeypatch.setattr(nics, "find_link", lambda name=None, mac=None: {"wan0": (2, "wan0"), "lan0": (3, "lan0")}[name])
    now = {2: "wan0", 3: "lan0"}

    def link_name(index):
        if index not in now:
            raise OSError(6, "No such device or address")
        return now[index]
    monkeypatch.setattr(nics, "link_name", link_name)

    class Nic:
        def __init__(self, name):
            self.name, self.mac = name, None
    undo = Undo()
    nics.keep_nic_redirects((Nic("wan0"), Nic("lan0")), undo, conf4=conf4)
    Path(conf4, "wan0").rename(Path(conf4, "wan1"))          # renamed, its switches 0 by the run
    Path(conf4, "wan0").mkdir()                              # another NIC took the old name
    for n in names:
        Path(conf4, "wan1", n).write_text("0\n")
        Path(conf4, "wan0", n).write_text("0\n")
    now.update({2: "wan1", 9: "wan0"})
    del now[3]                                               # lan0 went away
    undo.run()
    assert {n: _read(Path(conf4, "wan1", n)) for n in names} == {n: "1" for n in names}
    assert {n: _read(Path(conf4, "wan0", n)) for n in names} == {n: "0" for n in names}
