"""An ifconfig-pool-persist file that cannot be written (a full disk, a read-only mount) is
logged once until the failure changes or the file is written again, as the status file's
(gateway/ops.py): with `ifconfig-pool-persist FILE 1` it logged a warning every second for as
long as the disk stayed full. The old file stays whole (atomic_file.py) and the server runs on."""
from __future__ import annotations

import errno

from tests.gateway.conftest import World, client_conf, server_conf
from tests.gateway.test_tunnel import _up


def test_a_pool_file_that_cannot_be_written_is_logged_once_until_it_is_written_again(pki, tmp_path, caplog):
    caplog.set_level("INFO")
    pf = tmp_path / "ipp.txt"
    w = World()
    gw = w.add_server(server_conf(pki, extra=f"ifconfig-pool-persist {pf} 1\n"))
    w.add_client(client_conf(pki, "client0"))
    assert w.run(lambda: _up(w, 0), max_time=30)
    memory = gw.ops.pool_memory
    real_save = memory.save

    def full() -> None:
        raise OSError(errno.ENOSPC, "No space left on device")
    memory.save = full
    w.run_for(20)
    assert caplog.text.count("No space left on device") == 1, caplog.text.count("No space left on device")
    memory.save = real_save
    w.run_for(3)
    assert "client0," in pf.read_text()
    assert "written again" in caplog.text
    assert _up(w, 0)
