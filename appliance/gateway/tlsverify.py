"""`tls-verify CMD` and `tls-crypt-v2-verify CMD` as OpenVPN 2.6.14 runs them (ssl_verify.c
verify_cert / verify_cert_call_command / verify_cert_set_env; tls_crypt.c
tls_crypt_v2_verify_metadata), but off the event loop.

tls-verify: for each certificate of the chain OpenSSL verified, the deepest (the root) first,
`CMD DEPTH SUBJECT` (SUBJECT as OpenVPN prints it: tls.openvpn_subject), with the environment
growing as OpenVPN's does across the calls: X509_<depth>_<field>, tls_id_N, tls_digest_N,
tls_digest_sha256_N, tls_serial_N, tls_serial_hex_N of each depth done so far, `common_name` from
depth 0 on, untrusted_ip/untrusted_port (the peer), script_type=tls-verify. The first non-zero
exit refuses the peer and the calls stop there (OpenVPN's verify callback fails at that depth).
A chain deeper than OpenVPN's MAX_CERT_DEPTH (16) is refused without a call, as there.

tls-crypt-v2-verify: once, before any TLS, with `metadata_type` (the metadata's first byte, in
decimal), `metadata_file` (the rest, in a file of tmp-dir removed afterwards) and
script_type=tls-crypt-v2-verify; non-zero refuses.

Why off the loop: OpenVPN runs them synchronously inside the handshake, and every tunnel waits
while a command looks something up. Here the engine holds the one handshake (events
TlsVerifyRequested / V2VerifyRequested) and this runner's workers run the commands; the pump feeds
the verdict back. Bounds: each job (all the depths of one chain together) has a time limit, past
which it is killed with what it started and counts as a refusal; at most MAX_PENDING jobs queued
or running in all, PER_SOURCE_PENDING per source address (an IPv6 /64 counts as one) and
PER_IDENTITY_PENDING per identity (the peer certificate's fingerprint for tls-verify, the client
key's digest for tls-crypt-v2-verify: gateway/slots.py), so one host's flood of handshakes holds a
few slots, and so does one stolen certificate or client key used from many addresses, and others
still get theirs. A job refused for room refuses its handshake at once (the peer retries, as after
any TLS failure).

tls-export-cert DIR: during each call, the certificate of that depth is in a file of DIR named in
`peer_cert` (openvpn_pef_*.tmp, as OpenVPN's verify_cert_cert_export_env), removed after the call;
a file that cannot be made refuses the peer ("Failed to export certificate"), as there.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import subprocess
import tempfile
import time
from collections import deque
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization

from ..openvpn.sources import source_group
from ..openvpn.tls import MAX_CERT_DEPTH, cert_env, common_name, openvpn_subject
from .offloop import OffLoopWorkers
from .script_env import ENV_MAX, VAR_MAX, env_drops, said_dropped
from .scripts import Running, run_limited
from .slots import IDENTITY, SOURCE, TOTAL, Slots, identity_of_cert

log = logging.getLogger("vpn-appliance")

WORKERS = 2                 # commands at once
MAX_PENDING = 64            # jobs queued or running, all sources together
PER_SOURCE_PENDING = 4      # of those, from one source address
# Of those, for one certificate or one tls-crypt-v2 client key. A client has one handshake going
# (two while a reconnect overtakes its own stale one), so 4 never refuses it; as many as one
# address holds, so one identity from 16 addresses holds 4 slots, not all 64: filling the queue
# takes 16 valid certificates (or keys). Deployments that share one certificate among many
# users get 4 of its handshakes checked at once; the others retry, as after any TLS failure.
PER_IDENTITY_PENDING = 4
TIME_LIMIT = 10.0           # seconds for one job (all its depths); capped below hand-window by the caller
_ERR_TAIL = 4096
LOG_SUBJECT_MAX = 256       # characters of a refused certificate's subject in the log line


@dataclass(frozen=True)
class Call:
    """One command run: its arguments and environment (what a test or the log may show)."""
    argv: tuple[str, ...]
    env: dict
    pem: bytes = b""                # the certificate of this depth (tls-export-cert writes it out)
    own: frozenset = frozenset()    # the names this chain set (never left out to fit: script_env.env_drops)


def clean(value: str) -> str:
    """An environment value or argument as it can be passed at all: a NUL (which no C string
    holds) made `_`. The values are OpenVPN's already (control characters remapped or escaped),
    so this only matters for what our readers let through."""
    return value.replace("\0", "_")


def chain_calls(argv: list[str], chain: tuple, base_env: dict[str, str], name: str | None = None,
                track: tuple[str, ...] = ()) -> list[Call] | str:
    """The calls for a verified chain (depth 0 first in `chain`), in OpenVPN's order (deepest
    first), each with the environment as OpenVPN's stands at that call; or why the chain is
    refused without one. `name`: the peer's name as the session knows it (tls.peer_name: with
    x509-username-field, those fields' values), depth 0's `common_name` as in OpenVPN's
    verify_cert -- the CN there, when the session goes by another name, let a command allow one
    identity and the tunnel carry another. None: the CN (no x509-username-field). `track`: the
    x509-track lines (tls.cert_env)."""
    if len(chain) > MAX_CERT_DEPTH:
        return f"certificate chain of depth {len(chain) - 1} (OpenVPN refuses depth {MAX_CERT_DEPTH} and more)"
    env = dict(base_env)
    own = {clean(k) for k in ("untrusted_ip", "untrusted_ip6", "untrusted_port") if k in base_env}
    own |= {"script_type", "PATH", "peer_cert"}
    calls = []
    for depth in range(len(chain) - 1, -1, -1):
        cert = chain[depth]
        if depth == 0:
            env["common_name"] = (name if name is not None else common_name(cert)) or ""
            own.add("common_name")
        mine = cert_env(cert, depth, track)
        own.update(clean(k) for k in mine)
        env.update(mine)
        env["script_type"] = "tls-verify"
        calls.append(Call((*argv, str(depth), clean(openvpn_subject(cert))),
                          {clean(k): clean(v) for k, v in env.items()},
                          cert.public_bytes(serialization.Encoding.PEM), frozenset(own)))
    return calls


def fit_calls(calls: list[Call]) -> list[Call] | str:
    """The calls with their environment within what the kernel passes (script_env.env_drops), or
    why not. Why: on a client, each handshake after the first sees the whole set the tunnel's UP
    made, the server's pushed options with it (1,024 `dhcp-option` of ~2,000 bytes make 2 MB of
    foreign_option_N), and past ARG_MAX the command could not start (E2BIG): every renegotiation
    was refused and the tunnel restarted, for as long as that server pushed so. OpenVPN 2.6's
    execve fails the same way (its options are cut at 256 bytes, so it takes ~8,000 of them). The
    largest variables but this chain's own (its X509_*, tls_*, common_name, untrusted_*) are left
    out, named once in the log; what the command checks is never left out: a chain whose own
    variables do not fit is refused, saying so. The deepest call's set holds all the others'."""
    if not calls:
        return calls
    last = calls[-1]
    full = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "peer_cert": "/" * 64, **last.env}
    drop = env_drops(full, ENV_MAX, lambda k: k in last.own)
    if drop is None:
        return ("its certificate chain's own variables are more than a command's environment takes "
                f"({ENV_MAX} bytes, or {VAR_MAX} for one)")
    if not drop:
        return calls
    said_dropped("tls-verify", full, drop)
    return [dataclasses.replace(c, env={k: v for k, v in c.env.items() if k not in drop}) for c in calls]


def _shown(subject: str) -> str:
    """A subject for the log: a hostile 100 KB one must not make a 100 KB log line."""
    return subject if len(subject) <= LOG_SUBJECT_MAX else subject[:LOG_SUBJECT_MAX] + f"... ({len(subject)} characters)"


@dataclass
class _Job:
    key: object
    source: str
    chain: tuple | None = None                 # tls-verify: (argv, chain, base_env, name, track), made into calls by the worker
    metadata: tuple[int, bytes] | None = None  # tls-crypt-v2-verify: (type, the rest)
    argv: tuple[str, ...] = ()
    identities: tuple[str, ...] = ()           # for the per-identity cap (slots.py)


class VerifyRunner(OffLoopWorkers):
    """submit_chain / submit_metadata -> None when queued, else why not (the caller refuses);
    verdicts from take_results() as (key, ok, reason). `inline=True` runs in the caller (tests)."""

    def __init__(self, time_limit: float = TIME_LIMIT, tmp_dir: str | None = None, inline: bool = False,
                 workers: int = WORKERS, max_pending: int = MAX_PENDING,
                 per_source_pending: int = PER_SOURCE_PENDING,
                 per_identity_pending: int = PER_IDENTITY_PENDING, export_dir: str | None = None) -> None:
        self.time_limit = time_limit
        self.tmp_dir = tmp_dir
        self.export_dir = export_dir            # tls-export-cert
        self.inline = inline
        self.max_pending = max_pending
        self.per_source_pending = per_source_pending
        self.slots = Slots(max_pending, per_source_pending, per_identity_pending)
        self.pending: dict[str, int] = self.slots.by_source      # source -> jobs queued or running
        self.results: deque = deque()          # (key, job, ok, reason), appended by workers
        self.ran = 0
        self.refused: dict[str, int] = {}
        self.running = Running()
        super().__init__(inline, workers, "tls-verify")

    # ---------------------------------------------------------------- the pump's side
    def submit_chain(self, key: object, source: str, argv: list[str], chain: tuple,
                     base_env: dict[str, str], name: str | None = None, track: tuple[str, ...] = ()) -> str | None:
        if len(chain) > MAX_CERT_DEPTH:         # (the rest of the work is the worker's, off the loop)
            return chain_calls(argv, chain, base_env, name)
        ident = identity_of_cert(chain[0]) if chain else None
        return self._submit(_Job(key, source_group(source), chain=(list(argv), tuple(chain), dict(base_env), name, tuple(track)),
                                 identities=(ident,) if ident else ()))

    def submit_metadata(self, key: object, source: str, argv: list[str], metadata_type: int,
                        metadata: bytes, capped: bool = True, identity: str | None = None) -> str | None:
        """`capped=False`: a reload's check of a connected client (ops.py), bounded by the
        clients the server holds, not by the queue's room for strangers' handshakes. `identity`:
        the client key's (slots.identity_of_v2_key), for the per-identity cap."""
        return self._submit(_Job(key, source_group(source), metadata=(metadata_type, bytes(metadata)),
                                 argv=tuple(argv), identities=(identity,) if identity else ()), capped)

    _WHY = {TOTAL: "too many verify commands queued",
            SOURCE: "too many verify commands queued for one address",
            IDENTITY: "too many verify commands queued for one certificate or client key"}

    def _submit(self, job: _Job, capped: bool = True) -> str | None:
        cap = self.slots.refusal(job.source, job.identities, capped)
        if cap is not None:
            why = self._WHY[cap]
            self.refused[why] = self.refused.get(why, 0) + 1
            return why
        self.slots.take(job.source, job.identities)
        self._start(job)
        return None

    def _start(self, job: _Job) -> None:
        if self._pool is None:
            self.results.append((job.key, job, *self._run(job)))
            return
        fut = self._pool.submit(self._run, job)
        fut.add_done_callback(lambda f, j=job: self._done(j, f))

    def _done(self, job: _Job, fut) -> None:
        if fut.cancelled():
            return
        ok, reason = fut.result() if fut.exception() is None else (False, "the command failed")
        self.results.append((job.key, job, ok, reason))
        self._ring()

    def take_results(self) -> list[tuple[object, bool, str]]:
        out = []
        while self.results:
            key, job, ok, reason = self.results.popleft()
            self.slots.free(job.source, job.identities)
            self.ran += 1
            out.append((key, ok, reason))
        return out

    def close(self) -> None:
        self.running.stop()
        self._shutdown()

    # ---------------------------------------------------------------- the workers' side
    def _run(self, job: _Job) -> tuple[bool, str]:
        try:
            if job.chain is not None:
                calls = chain_calls(*job.chain)
                if not isinstance(calls, str):
                    fitted = fit_calls(calls)
                    if isinstance(fitted, str):
                        return False, f"VERIFY SCRIPT ERROR: depth=0, {_shown(calls[-1].argv[-1])}: {fitted}"
                    calls = fitted
                return (False, calls) if isinstance(calls, str) else self._run_chain(calls)
            return self._run_metadata(job)
        except Exception as e:  # noqa: BLE001 - a broken run refuses, it never accepts
            return False, f"verify command failed: {e}"

    def _one(self, call: Call, limit: float) -> str | None:
        """Run one call; None when it exited 0, else why not."""
        name = os.path.basename(call.argv[0])
        if limit <= 0:
            return f"{name} ran past the {self.time_limit:g} s limit"
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), **call.env}
        with tempfile.TemporaryFile() as err_f:
            try:
                status = run_limited(list(call.argv), env, limit, subprocess.DEVNULL, err_f, self.running)
            except (OSError, ValueError) as e:      # E2BIG (a huge environment) refuses too
                return f"cannot run {call.argv[0]}: {getattr(e, 'strerror', None) or e}"
            if status is None:
                return f"{name} ran past the {self.time_limit:g} s limit"
            if status != 0:
                err_f.seek(max(0, os.fstat(err_f.fileno()).st_size - _ERR_TAIL))
                err = err_f.read(_ERR_TAIL).decode("utf-8", "replace").strip().splitlines()
                return f"{name} exited with status {status}" + (f": {err[-1][:200]}" if err else "")
        return None

    def _run_chain(self, calls: list[Call]) -> tuple[bool, str]:
        end = time.monotonic() + self.time_limit
        for call in calls:
            why = self._one_exported(call, end - time.monotonic()) if self.export_dir else \
                self._one(call, end - time.monotonic())
            if why is not None:
                return False, f"VERIFY SCRIPT ERROR: depth={call.argv[-2]}, {_shown(call.argv[-1])}: {why}"
        return True, ""

    def _one_exported(self, call: Call, limit: float) -> str | None:
        """tls-export-cert: the call with its certificate in a file of export_dir (mode 0600,
        mkstemp), named in `peer_cert`, and the file removed afterwards whatever happened."""
        try:
            fd, path = tempfile.mkstemp(prefix="openvpn_pef_", suffix=".tmp", dir=self.export_dir)
        except OSError as e:
            return f"TLS Error: Failed to export certificate for --tls-export-cert in {self.export_dir}: " \
                   f"{e.strerror or e}"
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(call.pem)
            return self._one(Call(call.argv, {**call.env, "peer_cert": path}, call.pem), limit)
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass

    def _run_metadata(self, job: _Job) -> tuple[bool, str]:
        mtype, data = job.metadata
        fd, path = tempfile.mkstemp(prefix="openvpn_tls_crypt_v2_metadata_", suffix=".tmp", dir=self.tmp_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            env = {"script_type": "tls-crypt-v2-verify", "metadata_type": str(mtype), "metadata_file": path}
            why = self._one(Call(job.argv, env), self.time_limit)
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass
        return (True, "") if why is None else (False, f"TLS CRYPT V2 VERIFY SCRIPT ERROR: {why}")


def make_verify_runner(opts, inline: bool = False) -> VerifyRunner:
    """The runner for a config with tls-verify or tls-crypt-v2-verify. Its time limit stays well
    inside hand-window, so a killed command's refusal reaches the peer before its handshake ends
    by itself."""
    return VerifyRunner(time_limit=min(TIME_LIMIT, max(1.0, opts.hand_window / 2)), tmp_dir=opts.tmp_dir,
                        inline=inline, export_dir=opts.tls_export_cert)
