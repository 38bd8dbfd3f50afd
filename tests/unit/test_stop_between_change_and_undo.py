"""A stop signal between a change to the host and the push of its undo no longer leaves the change.

Why (atk45): run_toml's set-up makes each change (ip_forward, a sysctl, an address, a route, the
nft tables) and then pushes the step that reverts it. SetUpSignals' handler raises where the
signal lands, so a SIGTERM between the two skipped the push: the undo list ran without it.
ip_forward stayed 1 after the run while the kill switch was flushed -- the host forwarding its
LAN to the WAN in clear. Now `with undo.step():` holds a stop signal until the push is made
(host/setup_signals.py SetUpSignals.step). The signal is delivered here by calling the handler
where a real one would run its Python handler: just after the write, before the push."""
from __future__ import annotations

import builtins
import signal
import time

import pytest

from appliance.host.setup_signals import SetUpSignals, StoppedInSetUp
from appliance.router import nics
from appliance.router.nics import Undo


def _signal_after_writing(monkeypatch, sigs: SetUpSignals, target: str) -> list[str]:
    """nics' open(): writing `target` ends with a SIGTERM's handler run, as the kernel would
    deliver one then. Returns what was written."""
    real_open, written = builtins.open, []

    class _Writer:
        def __init__(self, f) -> None:  # noqa: ANN001
            self.f = f

        def __enter__(self):
            return self.f

        def __exit__(self, *exc) -> None:  # noqa: ANN002
            self.f.close()
            written.append(target)
            sigs._handler(signal.SIGTERM, None)

    def fake_open(path, mode="r", *a, **k):  # noqa: ANN001, ANN002, ANN003
        f = real_open(path, mode, *a, **k)
        return _Writer(f) if str(path) == target and "w" in mode and not written else f
    monkeypatch.setattr(nics, "open", fake_open, raising=False)
    return written


def _undo(sigs: SetUpSignals) -> Undo:
    undo = Undo()
    undo.guard = sigs.step          # as run_toml sets it
    return undo


def test_forwarding_switched_on_as_a_stop_signal_comes_is_switched_off_again(tmp_path, monkeypatch):
    path = tmp_path / "ip_forward"
    path.write_text("0\n")
    sigs = SetUpSignals()
    undo = _undo(sigs)
    written = _signal_after_writing(monkeypatch, sigs, str(path))
    with pytest.raises(StoppedInSetUp):
        nics.enable_forwarding(undo, str(path))
    assert written and sigs.restoring_now
    undo.run()
    assert path.read_text() == "0\n", "ip_forward left at 1 after the run (its restore was never pushed)"


def test_a_sysctl_set_as_a_stop_signal_comes_is_put_back(tmp_path, monkeypatch):
    path = tmp_path / "accept_redirects"
    path.write_text("1\n")
    sigs = SetUpSignals()
    undo = _undo(sigs)
    _signal_after_writing(monkeypatch, sigs, str(path))
    with pytest.raises(StoppedInSetUp):
        nics._sysctl(str(path), "0", undo)
    undo.run()
    assert path.read_text() == "1\n"


def test_a_step_holds_a_stop_until_it_ends_and_nothing_else():
    sigs = SetUpSignals()
    done = []
    with pytest.raises(StoppedInSetUp) as ei:
        with sigs.step():
            with sigs.step():               # nested: raised at the outer step's end only
                sigs._handler(signal.SIGINT, None)
                done.append("inner")
            done.append("outer")
    assert done == ["inner", "outer"] and ei.value.name == "SIGINT"
    with sigs.step():                       # restoring now: nothing raises, nothing held
        sigs._handler(signal.SIGTERM, None)
    fresh = SetUpSignals()
    with fresh.step():
        fresh._handler(signal.SIGHUP, None)      # ignored as outside a step
    assert fresh.take_ignored() == "SIGHUP" and not fresh.restoring_now
    with pytest.raises(StoppedInSetUp):
        fresh._handler(signal.SIGTERM, None)     # outside a step: at once, as before


def test_a_dhcp_lease_applied_as_a_stop_signal_comes_is_released_and_removed(monkeypatch):
    """review46d: configure_dhcp pushed the lease's stop after dhcp_configure returned, outside
    any step: a SIGTERM as the lease's address went on left it (and its default route) on the
    WAN after the run, with no DHCPRELEASE. The wait for a lease stays outside the step (a stop
    ends it at once); the address and the push are one step now."""
    from appliance.boot import dhcp_client
    sigs = SetUpSignals()
    undo = _undo(sigs)
    on_nic: list[str] = []
    released: list[str] = []
    offer = dhcp_client.Offer("198.18.7.10", 24, "198.18.7.1", (), "198.18.7.1", 3600)

    def applied(ifname, got) -> None:  # noqa: ANN001
        on_nic.append(got.address)
        sigs._handler(signal.SIGTERM, None)     # as the kernel would deliver one right then

    monkeypatch.setattr(dhcp_client._Client, "acquire", lambda self: (offer, time.monotonic()))
    monkeypatch.setattr(dhcp_client._Client, "keep_renewed", lambda self, lease: None)
    monkeypatch.setattr(dhcp_client._Client, "watch_link", lambda self, lease: None)
    monkeypatch.setattr(dhcp_client, "_apply", applied)
    monkeypatch.setattr(dhcp_client, "_remove", lambda ifname, address, prefixlen: on_nic.remove(address))
    monkeypatch.setattr(dhcp_client, "release", lambda ifname, mac, address, server: released.append(address))
    monkeypatch.setattr(nics, "IPRoute", _NoLinkChange)
    with pytest.raises(StoppedInSetUp):
        nics.configure_dhcp("lo", undo)
    assert on_nic == ["198.18.7.10"], "the lease was never applied: the test did not reach the window"
    undo.run()
    assert on_nic == [], "the DHCP address stayed on the WAN after the run (its undo was never pushed)"
    assert released == ["198.18.7.10"]


class _NoLinkChange:
    """IPRoute for configure_dhcp's link-up: no change to the test host's loopback."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        pass

    def link_lookup(self, ifname: str) -> list[int]:
        return [1]

    def link(self, *a, **k) -> None:  # noqa: ANN002, ANN003
        pass
