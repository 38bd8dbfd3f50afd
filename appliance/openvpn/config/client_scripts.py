"""The client's own scripts (`up`, `down`, `route-up`, `route-pre-down`, `ipchange`; read in
d_ops.py) checked against the rest of the profile once it is read, so that a profile that could
not run them as OpenVPN 2.6 does fails before start with file:line:

- a server config: our server runs client-connect/-disconnect and learn-address, not these
  (accepted, they would be silently ignored);
- `up`/`down` without `script-security 2`: OpenVPN 2.6 reads the profile, connects, then ends the
  run at the first tunnel ("Failed running command (--up/--down): disallowed by script-security
  setting", M_FATAL); here it fails at once, at the script's line. route-up, route-pre-down and
  ipchange without it: 2.6 warns once and runs none of them; so does our client
  (gateway/client_scripts.py logs 2.6's warning), and `check` notes it at the line;
With `user`/`group`, OpenVPN 2.6 runs `ipchange` (before the first tunnel), the first `up` and
the first `route-up` as root, before its privilege drop at "Initialization Sequence Completed";
our client drops before it connects (host/privileges.py), so a root helper forked before the drop
runs those (host/script_root.py: root_commands says which); `down`, `route-pre-down` and the later
ones run as `user` there too, and here.
"""
from __future__ import annotations

from .parser import ParseState

# field -> directive, in the order OpenVPN runs them
SCRIPTS = {"ipchange_script": "ipchange", "up_script": "up", "route_up_script": "route-up",
           "route_pre_down_script": "route-pre-down", "down_script": "down"}
# 2.6 ends the run when these cannot run (run_up_down: S_FATAL); the others only warn.
FATAL = ("up_script", "down_script")
# What 2.6 runs as root before its privilege drop (init.c: do_uid_gid_chroot after do_route).
AS_ROOT = ("up_script", "route_up_script", "ipchange_script")


def finish_client_scripts(p: ParseState) -> None:
    o = p.o
    given = [f for f in SCRIPTS if getattr(o, f) is not None]
    if not given:
        return
    if o.role == "server":
        for f in given:
            p.err(SCRIPTS[f], "a server's up/down scripts are not run here (our server runs client-connect, "
                              "client-disconnect and learn-address); remove the line", o.source[f][1])
        return
    if o.script_security < 2:
        for f in given:
            if f in FATAL:
                p.err(SCRIPTS[f], "needs `script-security 2` (OpenVPN 2.6 would end the run at the first tunnel: "
                                  "\"disallowed by script-security setting\")", o.source[f][1])
            else:
                p.line = o.source[f][1]
                p.note(SCRIPTS[f], "not run without `script-security 2` (as OpenVPN 2.6, which only warns)")


def root_commands(o) -> dict[str, list[str]]:
    """What the root helper runs with `user`/`group` (kind -> argv): the scripts 2.6 runs before
    its drop, those script-security lets run."""
    return {SCRIPTS[f]: getattr(o, f) for f in AS_ROOT
            if getattr(o, f) is not None and (o.script_security >= 2 or f in FATAL)}


def skipped_without_security(o) -> list[str]:
    """The directives of the scripts script-security keeps from running (OpenVPN 2.6 warns once)."""
    if o.script_security >= 2:
        return []
    return [d for f, d in SCRIPTS.items() if f not in FATAL and getattr(o, f) is not None]
