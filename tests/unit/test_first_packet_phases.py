"""lab/first_packet.py splits a handshake's wire into phases from the prober's packet records:
the split must follow the packets (who sent what, when), not their count or position."""
from lab.first_packet import PHASES, packet_counts, phases

# [ms since the prober's start, direction, UDP payload bytes, opcode, key id], as the prober records.
LADDER = [
    [10.0, "out", 14, 7, 0],          # our hard reset
    [10.2, "in", 26, 8, 0],           # the server's
    [10.5, "out", 1554, 4, 0],        # ClientHello (two datagrams, one GSO send as once recorded)
    [10.9, "in", 22, 5, 0],           # the server's lone ACK of its first part
    [11.6, "in", 1178, 4, 0],         # the server's TLS flight
    [12.7, "out", 1335, 4, 0],        # our Finished and key-method message
    [13.5, "in", 192, 4, 0],          # session tickets
    [13.9, "out", 26, 5, 0],
    [14.1, "in", 238, 4, 0],          # key-method message
    [14.6, "in", 275, 4, 0],          # PUSH_REPLY
    [15.4, "out", 168, 9, 0],         # our first data packet
    [15.6, "in", 56, 9, 0],
]
ROW = {"pkts": LADDER, "ctl": 14.6, "data": 15.4, "echo": 15.7}


def test_phases_follow_the_packets():
    ph = phases(ROW)
    assert list(ph) == list(PHASES)
    assert ph == {"reset->CH": 0.3, "CH->flight": 1.1, "flight->Fin": 1.1, "Fin->answer": 0.8,
                  "answer->ctl": 1.1, "ctl->data": 0.8, "data->echo": 0.3}


def test_a_lone_ack_is_not_the_flight_and_a_missing_milestone_gives_none():
    assert phases(ROW)["CH->flight"] == 1.1          # the 22-byte ACK at 10.9 is not the flight
    no_flight = dict(ROW, pkts=[p for p in LADDER if p[2] != 1178])
    assert phases(no_flight) is None
    assert phases({"pkts": [], "ctl": None, "data": None, "echo": None}) is None


def test_packet_counts_by_kind():
    assert packet_counts(ROW) == {"ctl out": 3, "ack out": 1, "data out": 1,
                                  "ctl in": 5, "ack in": 1, "data in": 1}


def test_two_hosts_keeps_each_side_on_its_own_cpu():
    """--layout two-hosts: as deployed, the client side (client, the prober standing for the user's
    program) and the server side (server, echo service) never share a CPU."""
    from lab.first_packet import LAYOUTS
    srv, cli, prober, echo = LAYOUTS["two-hosts"]
    assert None not in (srv, cli, prober, echo)
    assert cli != srv and prober == cli and echo == srv
