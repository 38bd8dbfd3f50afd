"""Reliability layer: in-order delivery, selective acks, backoff, window."""
from appliance.openvpn.reliable import SEND_WINDOW, ReliableChannel


def test_in_order_delivery_with_reordering_and_duplicates():
    r = ReliableChannel()
    assert r.receive(1, 4, b"b") == []
    assert r.receive(0, 4, b"a") == [(4, b"a"), (4, b"b")]
    assert r.receive(0, 4, b"a") == []          # duplicate: not delivered again ...
    assert r.take_acks(8) == [1, 0]             # ... but acked (each id once in the pending list)
    assert r.receive(2, 4, b"c") == [(4, b"c")]


def test_beyond_window_is_not_buffered():
    r = ReliableChannel()
    assert r.receive(100, 4, b"x") == []
    assert 100 not in r.recv_buffer


def test_window_and_retransmit_backoff():
    r = ReliableChannel(initial_timeout=2.0)
    for i in range(SEND_WINDOW + 3):
        r.enqueue(4, bytes([i]))
    first = r.due(0.0)
    assert [m.msg_id for m in first] == list(range(SEND_WINDOW))
    assert r.due(1.0) == []
    again = r.due(2.0)
    assert [m.msg_id for m in again] == list(range(SEND_WINDOW))   # resent after 2 s
    assert r.due(5.9) == []                                         # next after 4 s more
    assert len(r.due(6.0)) == SEND_WINDOW
    r.process_acks([0, 1])
    new = r.due(6.0)
    assert [m.msg_id for m in new] == [SEND_WINDOW, SEND_WINDOW + 1]   # window slid
    assert r.retransmissions == 2 * SEND_WINDOW


def test_fast_retransmit_after_three_later_acks():
    r = ReliableChannel(initial_timeout=10.0)
    for i in range(5):
        r.enqueue(4, b"m")
    r.due(0.0)
    r.process_acks([1, 2, 3])
    assert [m.msg_id for m in r.due(0.5)] == [0]


def test_no_retransmission_on_tcp():
    r = ReliableChannel(retransmit=False)
    r.enqueue(4, b"a")
    assert len(r.due(0.0)) == 1
    assert r.due(100.0) == [] and r.next_deadline() is None


def test_all_acked():
    r = ReliableChannel()
    r.enqueue(4, b"a")
    r.due(0.0)
    assert not r.all_acked()
    r.process_acks([0])
    assert r.all_acked()


def test_message_ids_never_wrap():
    import pytest

    from appliance.openvpn.errors import PacketIdExhausted
    from appliance.openvpn.reliable import ReliableChannel
    r = ReliableChannel()
    r.next_send_id = 0xFFFFFFFF
    r.enqueue(4, b"last")
    assert [m.msg_id for m in r.due(0.0)] == [0xFFFFFFFF]
    r.enqueue(4, b"one too many")
    with pytest.raises(PacketIdExhausted):
        r.due(0.0)


def test_acks_sent_lately_ride_again_in_later_packets_newest_first_and_bounded():
    """As OpenVPN 2.6's ack_mru: an ack is not sent once only (our server's reset is never
    resent, so the client's one ack of it, if lost, was the only one); taking the lately sent
    ones consumes nothing, so no packet goes out for them alone."""
    from appliance.openvpn.reliable import RECENT_ACKS_KEPT
    r = ReliableChannel()
    r.receive(0, 4, b"reset")
    assert r.take_acks(4) == [0]
    assert r.pending_acks == [] and r.take_acks(4) == [0]     # again, in the next packet's room
    for i in range(1, 12):
        r.receive(i, 4, b"x")
    assert r.take_acks(4) == [1, 2, 3, 4]                     # the new ones first
    assert r.take_acks(8) == [5, 6, 7, 8, 9, 10, 11, 1]
    assert r.pending_acks == [] and len(r.recent_acks) == RECENT_ACKS_KEPT
