"""OpenVPN's own command line (`openvpn --status FILE --status-version 2 --config NAME.conf`),
read as the config text it stands for.

Why: Debian's systemd units for OpenVPN (openvpn-server@.service, openvpn-client@.service) and
many scripts start `/usr/sbin/openvpn` with directives on its command line. Swapping the program
for `vpn-appliance` there must keep them working, so the same words are read the same way
(OpenVPN 2.6 options.c parse_argv): each `--NAME` starts a directive, the words after it up to
the next `--` are its arguments, one word each whatever it holds (a blank or `#` included), and
the directives apply in order, `--config FILE` reading its file at that point, later ones
overriding earlier ones as in a file. Each becomes one config line with every argument quoted, so
the config parser -- one place for every directive's rules -- reads exactly those words; an error
names `<command line>:N`, N counting the directives. Relative file names are taken from the
working directory (the units' WorkingDirectory), as OpenVPN takes them.
"""
from __future__ import annotations

from ..errors import ConfigError

SOURCE = "<command line>"


def _quoted(word: str) -> str:
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_text(argv: list[str]) -> str:
    """The config lines `argv` stands for. Raises ConfigError as OpenVPN 2.6 refuses the words."""
    lines: list[list[str]] = []
    for word in argv:
        if word.startswith("--"):
            name = word[2:]
            if not name:
                raise ConfigError("`--` names no option", SOURCE, len(lines) + 1)
            lines.append([name])
        elif not lines:
            raise ConfigError(f"I'm trying to parse \"{word}\" as an --option parameter but I don't see a "
                              "leading '--' (as OpenVPN 2.6)", SOURCE, 1)
        else:
            lines[-1].append(word)
    out = []
    for n, (name, *args) in enumerate(lines, 1):
        for w in (name, *args):
            if any(c in w for c in "\n\r\0"):
                raise ConfigError(f"--{name}: a word holding a line break or NUL", SOURCE, n)
        if any(c in name for c in " \t\"'\\#;") or name.startswith("<"):
            # (`--<ca>` ... `--</ca>` made an inline block of the words between; 2.6 knows no such option)
            raise ConfigError(f"--{name}: not an option name", SOURCE, n)
        out.append(" ".join([name, *map(_quoted, args)]))
    return "".join(line + "\n" for line in out)
