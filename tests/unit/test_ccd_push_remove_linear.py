"""with_ccd_pushes (config/ccd.py) in linear time: a 1 MiB ccd file holds ~30,000 `push-remove`
lines, and filtering the option list again at each took ~0.2 s on the event loop at the client's
push. The answer is the line-by-line one OpenVPN 2.6 gives (each push-remove takes out what
begins with its prefix among the options so far, never the address lines)."""
from __future__ import annotations

import random

from appliance.openvpn.config.ccd import _NOT_IN_PUSH_LIST, with_ccd_pushes


def _line_by_line(opts, pushes, removes):
    out, done = list(opts), 0
    for n, prefix in removes:
        out += pushes[done:n]
        done = n
        out = [o for o in out if o.startswith(_NOT_IN_PUSH_LIST) or not o.startswith(prefix)]
    return out + pushes[done:]


def test_the_same_options_as_line_by_line():
    rnd = random.Random(7)
    words = ["route", "route-ipv6", "route-gateway", "dhcp-option DNS", "dhcp-option", "ifconfig", "ifconfig-ipv6",
             "ping", "", "r", "topology"]
    for _ in range(2000):
        opts = [f"{rnd.choice(words)} {rnd.randint(0, 3)}".lstrip() for _ in range(rnd.randint(0, 6))]
        pushes = [f"{rnd.choice(words)} {rnd.randint(0, 3)}".lstrip() for _ in range(rnd.randint(0, 6))]
        ns = sorted(rnd.randint(0, len(pushes)) for _ in range(rnd.randint(0, 5)))
        removes = [(n, rnd.choice(words) + rnd.choice(["", " ", " 1"])) for n in ns]
        assert with_ccd_pushes(opts, pushes, removes) == _line_by_line(opts, pushes, removes), (opts, pushes, removes)

