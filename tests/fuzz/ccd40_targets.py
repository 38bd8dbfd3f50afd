"""Per-client options read off the loop (fuzz40): client-connect's options file with the
management client-auth lines after it (gateway/scripts.py `_parsed`, review38), and large
client-config-dir files read by the worker (gateway/server_files.py `CcdReader`).

`connect-output`: the input is the script's file (its bytes, as file_text reads them) and the
client-auth lines, split at `\\xfe\\xfd`; the first byte repeats the file's text (up to 4 KiB:
many push / push-remove / iroute lines in any order). Oracle, differential against the parts
parsed alone (parse_ccd of each): the whole fails exactly when either part does, with
ConfigError naming CONNECT_OUTPUT (and each part's errors, the second's lines after the first's);
otherwise the result is the first part's options with the second's over them, as 2.6 imports
them one after the other: the second's ifconfig-push / ifconfig-ipv6-push / vlan-pvid win,
iroutes add up, disable and push-remove ifconfig stick, a push-reset in the second empties the
first's push lines and push-removes, a push-remove in the second takes from the first's pushes
(its position counts them), the IPv6 block as the later part says.

`ccd-reader`: a ccd file of the input's text grown to INLINE_MAX (16 KiB) plus or minus up to
64 bytes (the first byte: how much, and whether the text goes before or after the filling),
read three ways: CcdFiles on the loop (the simple path), at_connect with an inline CcdReader,
and at_connect with the worker thread (CcdPending, then the answer once take_finished has it).
Oracle: the three answers equal (CcdOptions, None, or a ConfigError with the same text); the
worker path says CcdPending exactly when the file is over INLINE_MAX; an answer is forgotten
after its read (the next connect reads again).
"""
from __future__ import annotations

import os
import shutil
import time

from tests.fuzz.scratch import scratch_dir

SEP = b"\xfe\xfd"


def _part_lines(text: str) -> int:
    from appliance.openvpn.config.lexer import split_lines
    return len(split_lines(text)) if text else 0


def _merge(a, b):
    """The options of part `a`, then part `b` over them (2.6's import order)."""
    from appliance.openvpn.config.model import CcdOptions
    c = CcdOptions()
    c.ifconfig_push = b.ifconfig_push or a.ifconfig_push
    c.iroutes = [*a.iroutes, *b.iroutes]
    c.iroutes6 = [*a.iroutes6, *b.iroutes6]
    c.ifconfig_ipv6_push = b.ifconfig_ipv6_push or a.ifconfig_ipv6_push
    if b.push_reset:
        c.push, c.push_remove = list(b.push), list(b.push_remove)
    else:
        c.push = [*a.push, *b.push]
        c.push_remove = [*a.push_remove, *((n + len(a.push), p) for n, p in b.push_remove)]
    c.push_reset = a.push_reset or b.push_reset
    c.disable = a.disable or b.disable
    c.vlan_pvid = b.vlan_pvid if b.vlan_pvid is not None else a.vlan_pvid
    c.block_ifconfig = a.block_ifconfig or b.block_ifconfig
    c.block_ifconfig_ipv6 = b.block_ifconfig_ipv6 if b.block_ifconfig_ipv6 is not None else a.block_ifconfig_ipv6
    # compat45: the session's lines, the later part's value winning; a fallback stays on once on.
    for f in ("ping", "ping_restart", "comp", "data_ciphers"):
        setattr(c, f, getattr(b, f) if getattr(b, f) is not None else getattr(a, f))
    if b.fallback is not None:
        c.fallback = (b.fallback[0], b.fallback[1] or bool(a.fallback and a.fallback[1]))
    else:
        c.fallback = a.fallback
    return c


def _errors(e) -> list:
    from appliance.openvpn.config.model import ConfigErrors
    return list(e.errors) if isinstance(e, ConfigErrors) else [e]


def make_connect_output():
    from appliance.gateway.scripts import CONNECT_OUTPUT, _parsed
    from appliance.openvpn.config import parse_ccd
    from appliance.openvpn.config.ccd import with_ccd_pushes
    from appliance.openvpn.errors import ConfigError
    from appliance.openvpn.peernames import file_text

    def one(data: bytes) -> None:
        if not data:
            return
        reps = 1 + (data[0] & 0x3F) * 8 if data[0] & 0x40 else 1
        first, _, second = data[1:].partition(SEP)
        text = file_text(first) * reps
        text = text[:4096]
        after = file_text(second)
        got = _parsed(text, after)
        assert got.text.startswith(text), "the script's text comes first"
        assert (got.options is None) != (got.error is None), "options or an error"
        if got.error is not None:
            assert isinstance(got.error, ConfigError)
            for e in _errors(got.error):
                assert e.path == CONNECT_OUTPUT, f"error names {e.path!r}"
        if after.startswith("\ufeff") or text.endswith("\ufeff"):
            return      # a BOM is skipped at a file's start only
        parts = []
        for t in (text, after):
            try:
                parts.append(parse_ccd(t, CONNECT_OUTPUT))
            except ConfigError as e:
                parts.append(e)
        if not after:
            if got.error is None:
                assert got.options == parts[0]
            else:
                assert isinstance(parts[0], ConfigError) and str(parts[0]) == str(got.error)
            return
        if isinstance(parts[0], ConfigError) or isinstance(parts[1], ConfigError):
            assert got.error is not None, f"a part fails alone ({parts}), the whole passed"
            want = [*(_errors(parts[0]) if isinstance(parts[0], ConfigError) else []),
                    *(_errors(parts[1]) if isinstance(parts[1], ConfigError) else [])]
            errs = _errors(got.error)
            if any("is not closed" in str(e) for e in want):
                return      # an inline block left open runs on into the second part's lines
            assert len(errs) == len(want), f"{len(errs)} errors, the parts have {len(want)}"
            offset = _part_lines(text if text.endswith("\n") or not text else text + "\n")
            n_first = len(_errors(parts[0])) if isinstance(parts[0], ConfigError) else 0
            for i, (e, w) in enumerate(zip(errs, want)):
                shift = offset if i >= n_first else 0
                if w.line is not None:
                    assert e.line == w.line + shift, f"error at line {e.line}, the part's at {w.line}+{shift}"
            return
        assert got.error is None, f"both parts pass alone, the whole fails: {got.error}"
        assert got.options == _merge(parts[0], parts[1]), "the whole is not the first part with the second over it"
        # What the client is pushed from it: with_ccd_pushes's linear walk against the plain one
        # (each push-remove filters everything so far, as 2.6 reads the file line by line).
        o = got.options
        base = [] if o.push_reset else list(BASE_PUSH)
        assert with_ccd_pushes(base, o.push, o.push_remove) == _pushes_plain(base, o.push, o.push_remove)
    return one


BASE_PUSH = ("route 198.18.0.0 255.255.0.0", "route-gateway 198.19.0.1", "topology subnet",
             "ifconfig 198.19.0.5 255.255.255.0", "ifconfig-ipv6 2001:db8::5/64 2001:db8::1",
             "dhcp-option DNS 198.18.0.53", "redirect-gateway def1")


def _pushes_plain(base: list[str], pushes: list[str], removes: list[tuple[int, str]]) -> list[str]:
    out = list(base)
    keep = ("ifconfig ", "ifconfig-ipv6 ")
    at = 0
    for j in range(len(pushes) + 1):
        while at < len(removes) and removes[at][0] == j:
            prefix = removes[at][1]
            out = [x for x in out if x.startswith(keep) or not x.startswith(prefix)]
            at += 1
        if j < len(pushes):
            out.append(pushes[j])
    assert at == len(removes), "a push-remove counted past the pushes"
    return out


def make_ccd_reader():
    from appliance.gateway.server_files import INLINE_MAX, CcdFiles, CcdReader
    from appliance.openvpn.errors import CcdPending, ConfigError

    tmp = scratch_dir("fuzz40-ccd-")
    worker = CcdReader(inline=False)
    inline = CcdReader(inline=True)

    def answer(fn):
        try:
            r = fn()
        except ConfigError as e:
            return ("error", str(e))
        return r

    def one(data: bytes) -> None:
        if not data:
            return
        mode, body = data[0], data[1:]
        cn = "client1"
        path = os.path.join(tmp, cn)
        if os.path.isdir(path):
            shutil.rmtree(path)
        delta = (mode & 0x7F) - 64                 # -64..63 bytes around INLINE_MAX
        size = max(INLINE_MAX + delta, len(body))
        # Mostly comment lines (cheap to skip: the target must run fast); with bit 7 eight push
        # lines first, so the filling holds directives too.
        comment = b"# " + b"x" * 180 + b"\n"
        need = size - len(body)
        fill = (b"push \"route 198.18.7.0 255.255.255.0\"\n" * 8 if mode & 0x80 else b"")
        fill = (fill + comment * (need // len(comment) + 1))[:need]
        if need and fill and not fill.endswith(b"\n"):
            fill = fill[:-1] + b"\n"
        raw = body + (b"\n" if body and not body.endswith(b"\n") and fill else b"") + fill \
            if mode & 1 else fill + body
        raw = raw[:max(size, len(body))]
        with open(path, "wb") as f:
            f.write(raw)
        st_size = os.path.getsize(path)

        plain = CcdFiles(tmp)
        want = answer(lambda: plain(cn))

        if st_size > INLINE_MAX:        # at or under it at_connect is the plain call itself
            files_i = CcdFiles(tmp)
            files_i.reader = inline
            got_i = answer(lambda: files_i.at_connect(cn))
            inline.take_finished()
            inline.forget([path])
            assert got_i == want, f"inline reader: {got_i!r} != {want!r}"

        files_w = CcdFiles(tmp)
        files_w.reader = worker
        pending = False
        try:
            got_w = answer(lambda: files_w.at_connect(cn))
        except CcdPending:
            pending = True
            deadline = time.monotonic() + 20
            done: set = set()
            while path not in done:
                assert time.monotonic() < deadline, "the worker never finished"
                time.sleep(0.0005)
                done |= worker.take_finished()
            got_w = answer(lambda: files_w.at_connect(cn))
            worker.forget(done)
        assert pending == (st_size > INLINE_MAX), f"{st_size} bytes: CcdPending={pending}"
        assert got_w == want, f"worker: {got_w!r} != {want!r}"
        assert path not in worker.ready, "an answer kept past its connect"
    return one


def seeds_connect_output() -> list[bytes]:
    s = [
        b"\x00ifconfig-push 198.19.0.9 255.255.255.0\npush \"route 10.1.0.0 255.255.0.0\"\n"
        + SEP + b"ifconfig-push 198.19.0.10 255.255.255.0\n",
        b"\x00push \"route 10.1.0.0 255.255.0.0\"\npush \"dhcp-option DNS 10.1.0.1\"\n"
        + SEP + b"push-remove route\npush \"route 10.2.0.0 255.255.0.0\"\n",
        b"\x00push \"a\"\npush-remove ifconfig-ipv6\n" + SEP + b"ifconfig-ipv6-push 2001:db8::5/64\npush-reset\npush \"b\"",
        b"\x00disable" + SEP + b"iroute 10.9.0.0 255.255.0.0\n",
        b"\x00iroute 10.9.0.0 255.255.0.0\niroute-ipv6 2001:db8:9::/48\nvlan-pvid 7" + SEP + b"vlan-pvid 9\n",
        b"\x00bogus line\n" + SEP + b"ifconfig-push 198.19.0.10\n",
        b"\x00<push>\nx\n" + SEP + b"</push>\n",
        b"\x50push \"route 10.1.0.0 255.255.0.0\"\npush-remove route\niroute 10.3.0.0 255.255.0.0\n"
        + SEP + b"push-reset\n",
        b"\x00push \"caf\xe9\"\r\n" + SEP + b"push-remove ifconfig\nifconfig-push 198.19.0.11 255.255.255.0",
        b"\x00" + SEP,
        b"\x00# only a comment" + SEP + b"; and another\n\n",
    ]
    return s


def seeds_ccd_reader() -> list[bytes]:
    body = b"ifconfig-push 198.19.0.9 255.255.255.0\niroute 10.9.0.0 255.255.0.0\npush \"route 10.1.0.0 255.255.0.0\"\n"
    return [bytes((64,)) + body, bytes((65,)) + body, bytes((63 | 0x80,)) + body, bytes((66 | 0x80,)) + body,
            bytes((64 + 1,)) + b"bogus\n" + body, bytes((127,)) + b"disable\n", bytes((0,)) + b"push-reset\n",
            bytes((65 | 0x80,)) + b"push-remove route\n", bytes((64,)) + b"<push>\nx\n",
            bytes((100,)) + b"push \"" + b"a" * 300 + b"\"\n"]
