"""LogHold (gateway/loghold.py): lines made while held are written later, in order, with the time
they were made; nothing outside the held stretch waits; a flood is written, not buffered."""
from __future__ import annotations

import logging

from appliance.gateway.loghold import MAX_HELD, LogHold


def test_held_lines_are_written_later_in_order_with_their_own_time(caplog):
    log = logging.getLogger("vpn-appliance")
    caplog.set_level(logging.INFO, "vpn-appliance")
    h = LogHold(log)
    log.info("before")
    h.begin()
    log.info("held %d", 1)
    log.warning("held %d", 2)
    h.end()
    log.info("after")                          # a line outside the held stretch is written at once
    assert [r.getMessage() for r in caplog.records] == ["before", "after"]
    h.write()
    assert [r.getMessage() for r in caplog.records] == ["before", "after", "held 1", "held 2"]
    held = [r for r in caplog.records if r.getMessage().startswith("held")]
    after = next(r for r in caplog.records if r.getMessage() == "after")
    assert all(r.created <= after.created for r in held), "a held line keeps the time it was made"
    h.write()
    assert len(caplog.records) == 4, "written once"


def test_a_flood_while_held_is_written_not_buffered(caplog):
    log = logging.getLogger("vpn-appliance")
    caplog.set_level(logging.INFO, "vpn-appliance")
    h = LogHold(log)
    h.begin()
    for i in range(MAX_HELD * 3):
        log.info("line %d", i)
    h.end()
    assert len(h.held) < MAX_HELD and len(caplog.records) >= MAX_HELD * 2
    h.write()
    assert [r.getMessage() for r in caplog.records] == [f"line {i}" for i in range(MAX_HELD * 3)]


def test_an_exception_logged_while_held_keeps_its_traceback_and_nothing_stays_patched(caplog):
    log = logging.getLogger("vpn-appliance")
    caplog.set_level(logging.INFO, "vpn-appliance")
    h = LogHold(log)
    h.begin()
    try:
        raise KeyError("boom")
    except KeyError:
        log.exception("failed %s", "here")
    h.end()
    assert caplog.records == [] and "_log" not in log.__dict__
    h.write()
    (r,) = caplog.records
    assert r.getMessage() == "failed here" and r.levelno == logging.ERROR
    assert r.exc_info[0] is KeyError and "boom" in caplog.text and "raise KeyError" in caplog.text


def test_a_level_not_enabled_is_not_held(caplog):
    log = logging.getLogger("vpn-appliance")
    caplog.set_level(logging.INFO, "vpn-appliance")
    h = LogHold(log)
    h.begin()
    log.debug("not wanted %s", "x")
    log.info("wanted")
    h.end()
    assert len(h.held) == 1


def test_held_lines_go_through_the_loggers_filters(caplog):
    """A peer name held as its bytes (peernames: `caf\\xe9` as `caf\\udce9`) is written `\\xe9`
    by logsetup.NameBytesFilter whether the line was held or not: held lines were handed to
    the handlers past the logger's filters, lone surrogates and all."""
    from appliance.logsetup import NameBytesFilter
    from appliance.openvpn.peernames import from_peer
    log = logging.getLogger("vpn-appliance")
    assert any(isinstance(f, NameBytesFilter) for f in log.filters)
    caplog.set_level(logging.INFO, "vpn-appliance")
    h = LogHold(log)
    h.begin()
    log.info("client %s up", from_peer(b"caf\xe9"))
    h.end()
    h.write()
    (r,) = caplog.records
    assert r.getMessage() == "client caf\\xe9 up"
    assert "\udce9" not in caplog.text
