"""lab/server_work.py cuts OpenVPN's server's callgrind dumps into one list per handshake: the
intervals between the start and end marks of each pair's round, nothing from before or between."""
from lab.first_packet import LAYOUTS, on_cpu
from lab.server_work import handshakes, read_dump


def test_dumps_between_marks_make_one_handshake_each():
    dumps = [("Program termination", 999),                      # never: idle time before any mark
             ("Client Request: start-ours-ovpn-0", 5_000),       # closes the idle time: not counted
             ("--dump-before=sendto", 60), ("--dump-before=sendto", 3_500),
             ("Client Request: end-ours-ovpn-0", 7),
             ("--dump-before=sendto", 40),                       # a send between clients: nobody's
             ("Client Request: start-ovpn-ovpn-0", 1_000),
             ("--dump-before=sendto", 61), ("Client Request: end-ovpn-ovpn-0", 3_568)]
    assert handshakes(dumps) == {"ours-ovpn-0": [60, 3_500, 7], "ovpn-ovpn-0": [61, 3_568]}


def test_a_handshake_without_its_end_keeps_what_was_dumped():
    assert handshakes([("Client Request: start-x-ovpn-1", 1), ("--dump-before=sendto", 2)]) == {"x-ovpn-1": [2]}


def test_read_dump_takes_the_trigger_and_the_total(tmp_path):
    p = tmp_path / "cg.1.3"
    p.write_text("version: 1\ncreator: callgrind-3.19.0\ndesc: Trigger: Client Request: end-ours-ovpn-0\n"
                 "events: Ir\nsummary: 10241570\n\nfn=main\n1 5\n")
    assert read_dump(p) == ("Client Request: end-ours-ovpn-0", 10241570)
    q = tmp_path / "cg.1.4"
    q.write_text("desc: Trigger: --dump-before=sendto\nevents: Ir\ntotals: 42\n")
    assert read_dump(q) == ("--dump-before=sendto", 42)


def test_layouts_keep_the_server_core_as_asked():
    assert on_cpu(None) == [] and on_cpu(1) == ["taskset", "-c", "1"]
    srv, cli, prober, echo = LAYOUTS["apart"]
    assert srv == 0 and 0 not in (cli, prober, echo)          # the server alone on its core
    srv, cli, prober, echo = LAYOUTS["server-core"]
    assert cli == srv and srv not in (prober, echo)           # only the client shares the server's core
    assert LAYOUTS["pin"] == (0, 1, 0, 0) and LAYOUTS["free"] == (None,) * 4
