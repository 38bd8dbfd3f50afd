"""`config FILE` inside a config: FILE's lines are read in place, as OpenVPN 2.6's add_option
reads them (options.c: read_config_file, its recursion limit).

What OpenVPN does, and what we do:
- FILE is opened relative to OpenVPN's working directory, which a `cd` line before it has moved.
  Ours resolves it as every other file name (ParseState.path_arg: the profile's directory, or
  `cd`'s DIR), the same under OpenVPN's systemd units (`--cd` the profile's directory). Names in
  FILE are resolved the same way, not from FILE's own directory (OpenVPN has one working
  directory), and a `cd` in FILE moves it for the lines after.
- At most 10 files deep, the top one counting (max_recursive_levels): OpenVPN refuses an include
  past it at the including line, and that is how a file that includes itself ends there. A loop
  is refused here at once, naming the chain.
- FILE's inline blocks are its own: a block must close in the file that opens it (OpenVPN's
  check_inline_file_via_fp reads the block from the same file), while `ca [inline]` in one file
  and `<ca>` in another pair up as in one file.
- `config stdin` reads OpenVPN's standard input; a profile here is read from a pipe at start only
  as the top file (`run /dev/stdin`), so the line is refused rather than read from a terminal.
- Attack-minded: FILE goes through regular_file like every other named file (a FIFO, a device, a
  directory are refused, not waited on), each no larger than a config may be, and all the files
  of one parse at most that much together and at most MAX_INCLUDES of them: a file that names
  another many times, that one many times again, would otherwise be read exponentially often.
- Reload (SIGHUP, management `signal SIGHUP`) parses the top file again, and so reads every
  included file again, with the same checks (config/__init__.load_config, gateway/ops.py).
"""
from __future__ import annotations

import os

from ..regular_file import CONFIG, read_regular_file
from ..peernames import ERRORS
from .parser import ParseState

MAX_DEPTH = 10          # OpenVPN 2.6's max_recursive_levels, the top file counting
MAX_INCLUDES = 1000     # `config` lines read in one parse, all files together


def _key(path: str) -> str:
    return os.path.realpath(path)


def include(p: ParseState, d: str, arg: str) -> None:
    """Read the file `arg` names in place of the `config` line being parsed."""
    if arg == "stdin":
        p.err(d, "stdin: reading the profile's rest from standard input is not supported here (a profile "
                 "may come from a pipe at start as a whole: `run /dev/stdin`); name a file")
        return
    # Read at its line, as OpenVPN opens it at its line: no `cd` after it changes which file
    # (so not ParseState.path_arg, which remembers relative names for that check).
    path = arg if os.path.isabs(arg) else os.path.join(p.base, arg)
    if 1 + len(p.includes) >= MAX_DEPTH:
        p.err(d, f"{arg}: more than {MAX_DEPTH} files deep (OpenVPN 2.6's limit for `config` in a config, "
                 "the top file counting)")
        return
    chain = ([] if p.top_path.startswith("<") else [os.path.abspath(p.top_path)]) + p.includes
    if "\0" not in path and _key(path) in {_key(c) for c in chain}:
        p.err(d, f"{arg}: includes itself ({' -> '.join([*chain, path])}); OpenVPN refuses that too, when "
                 f"the chain reaches {MAX_DEPTH} files")
        return
    if p.included_bytes > CONFIG.limit:
        # Said once, at the include that went past it, and the parse has failed: the next ones are
        # not read (1,000 `config BIG` lines each read 16 MiB only to be refused: 16 s to fail).
        return
    p.include_count += 1
    if p.include_count > MAX_INCLUDES:
        p.err(d, f"{arg}: more than {MAX_INCLUDES} `config` lines read in all (a file naming another many "
                 "times over?)")
        return
    try:
        data = (p.read_config or _read)(path)
    except OSError as e:
        p.err(d, f"cannot read {arg}: {e.strerror or e}")
        return
    p.included_bytes += len(data)
    if p.included_bytes > CONFIG.limit:
        p.err(d, f"{arg}: the included files hold more than {CONFIG.limit // (1024 * 1024)} MiB in all, the "
                 "most read of a config")
        return
    outer_path, outer_line, outer_current = p.path, p.line, p.current
    p.includes.append(path)
    p.path, p.current = path, None
    try:
        p.read_lines(data.decode("utf-8", ERRORS))
    finally:
        p.includes.pop()
        p.path, p.line, p.current = outer_path, outer_line, outer_current


def _read(path: str) -> bytes:
    """An included config: a regular file, no larger than a config may be (regular_file)."""
    return read_regular_file(path, CONFIG)
