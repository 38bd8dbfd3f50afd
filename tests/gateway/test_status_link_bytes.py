"""A server's byte counts, as OpenVPN 2.6 counts them: every byte of a client's packets on the
link both ways, the control channel's handshake included (forward.c: c2.link_read_bytes /
link_write_bytes, which multi_print_status, >BYTECOUNT_CLI and client-disconnect's
bytes_received/bytes_sent print), and for load-stats the totals over every client since the
start (link_read_bytes_global / link_write_bytes_global). Ours counted the data channel's
tunnel payloads only: 0 after a handshake where Debian's 2.6 shows ~2200 (seen in the lab).
The client's own "TCP/UDP read/write bytes" count the same bytes from the other end, but for the
first exchange, which 2.6's server answers before it makes the client's instance (the stateless
HMAC cookie reset, mudp.c do_pre_decrypt_check): over an in-memory link that loses nothing each
side's figure is the other's less those two packets, before and after any traffic."""
from __future__ import annotations

from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up, ping_both_ways


def _row(gw, cn: str) -> list[str]:
    rows = [x.split(",") for x in gw.ops.status_lines(2) if x.startswith(f"CLIENT_LIST,{cn},")]
    assert len(rows) == 1, gw.ops.status_lines(2)
    return rows[0]


def _quiet(w: World) -> None:
    """Let everything in flight arrive (keepalive 10 60: no ping due within a second)."""
    w.run_for(1)


def test_status_counts_the_link_bytes_of_the_handshake_and_the_traffic(pki):
    w = World()
    gw = w.add_server(server_conf(pki, extra="status-version 2\n"))
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    _quiet(w)
    cnt = w.clients[0].counters
    row = _row(gw, "client0")
    got_in, got_out = int(row[5]), int(row[6])
    assert got_in > 1000 and got_out > 1000, row           # the handshake counts
    # the client's hard reset and the stateless reply: one packet each way, uncounted (as 2.6)
    first_in, first_out = cnt.wire_out - got_in, cnt.wire_in - got_out
    assert 14 < first_in < 120 and 14 < first_out < 120, (row, cnt)
    ping_both_ways(w, 0)
    _quiet(w)
    row = _row(gw, "client0")
    assert int(row[5]) > got_in and int(row[6]) > got_out
    assert (int(row[5]), int(row[6])) == (cnt.wire_out - first_in, cnt.wire_in - first_out), (row, cnt)
    # load-stats: the same bytes, the only client, and (as 2.6's global counter) the stateless answer
    assert gw.ops.load_stats() == (1, int(row[5]), int(row[6]) + first_out)

def test_load_stats_keeps_the_bytes_of_clients_that_left(pki):
    w = World()
    gw = w.add_server(server_conf(pki))
    w.add_client(client_conf(pki, "client0"))
    w.add_client(client_conf(pki, "client1"))
    assert w.run(lambda: _up(w, 0) and _up(w, 1), max_time=30)
    _quiet(w)
    n, bin_, bout = gw.ops.load_stats()
    rows = [x.split(",") for x in gw.ops.status_lines(2) if x.startswith("CLIENT_LIST,")]
    stateless = gw.d.stateless_written                  # the two cookie answers
    assert 0 < stateless < 240
    assert (n, bin_, bout) == (2, sum(int(r[5]) for r in rows), sum(int(r[6]) for r in rows) + stateless), rows
    rec = next(r for r in gw.d.clients if r.common_name == "client1")
    assert gw.ops.client_kill(gw.ops.info[id(rec)].cid, "HALT")
    assert w.run(lambda: gw.ops.load_stats()[0] == 1, max_time=30)
    n, bin2, bout2 = gw.ops.load_stats()
    assert n == 1 and bin2 >= bin_ and bout2 > bout, (bin_, bout, bin2, bout2)   # the HALT went out too


def test_over_tcp_each_end_counts_the_two_byte_length_on_what_it_writes(pki):
    """As 2.6 over TCP: a packet's 2-byte length counts where it is written (link_socket_write_tcp
    prepends it before the count) and not where it is read (the stream framing strips it): the
    writer's figure is the reader's plus two bytes a packet, both ways, for our server and client
    alike, and no first exchange is left out (2.6 takes a TCP client on at accept)."""
    w = World()
    gw = w.add_server(server_conf(pki, proto="tcp", extra="status-version 2\n"))
    w.add_client(client_conf(pki, "client0", proto="tcp"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    _quiet(w)
    cnt = w.clients[0].counters
    row = _row(gw, "client0")
    up_gap, down_gap = cnt.wire_out - int(row[5]), int(row[6]) - cnt.wire_in
    # a handshake is 6-40 packets each way: two bytes each
    assert up_gap % 2 == 0 and down_gap % 2 == 0 and 12 <= up_gap <= 80 and 12 <= down_gap <= 80, (row, cnt)
    ping_both_ways(w, 0)
    _quiet(w)
    row = _row(gw, "client0")
    assert cnt.wire_out - int(row[5]) > up_gap and int(row[6]) - cnt.wire_in > down_gap, (row, cnt)
