"""`tls-exit` on our client, on in-memory ports (against OpenVPN 2.6: tests/interop/
test_tls_exit_vs_openvpn.py). OpenVPN 2.6 turns a TLS error (a refused handshake or certificate,
hand-window passed) into SIGTERM instead of SIGUSR1 with tls-exit (init.c do_signal_on_tls_errors);
ours accepted the directive and reconnected for ever. A push it cannot use is no TLS error there
(process-push-msg-failed restarts) and restarts here too."""
from __future__ import annotations

from tests.gateway.conftest import World, client_conf, server_conf


def _client(pki, extra: str):
    w = World()
    w.add_server(server_conf(pki))
    c = w.add_client(client_conf(pki, extra=extra))
    tried = []
    udp = c.ports.udp

    def recording(local, remote):
        tried.append(remote)
        return udp(local, remote)
    c.ports.udp = recording
    return w, c, tried


def test_a_refused_server_certificate_ends_the_run_with_tls_exit(pki, caplog):
    w, c, tried = _client(pki, "verify-x509-name not-the-server name\ntls-exit\n")
    assert w.run(lambda: c.result is not None, max_time=30), "still running after the TLS error"
    assert c.result == 1 and c.connections == 0
    assert tried == [], f"reconnected: {tried}"
    c._cleanup()                        # what run() does at the end: the held log lines are written
    assert "TLS error, exiting (tls-exit): verify-x509-name not-the-server name" in caplog.text, caplog.text[-1500:]


def test_without_tls_exit_the_same_error_reconnects(pki):
    w, c, tried = _client(pki, "verify-x509-name not-the-server name\n")
    w.run_for(20)
    assert c.result is None and len(tried) >= 2, tried


def test_a_push_it_cannot_use_restarts_even_with_tls_exit(pki, caplog):
    """pull-filter reject: the push is refused (OpenVPN: process-push-msg-failed, SIGUSR1)."""
    w, c, tried = _client(pki, 'pull-filter reject "ifconfig"\ntls-exit\n')
    w.run_for(20)
    assert c.result is None and len(tried) >= 1, tried
    assert "TLS error, exiting" not in caplog.text


def test_tls_exit_leaves_a_working_tunnel_alone(pki):
    w, c, _ = _client(pki, "tls-exit\n")
    assert w.run(lambda: c.conn is not None and c.conn.was_up, max_time=30)
    w.run_for(10)
    assert c.result is None and c.conn.was_up
