"""Every real-world profile of tests/real_profiles.py and every installer's server config and
client profile (tests/installer_configs.py, eduVPN's among them), saved again the way Windows
editors and web pages leave them, checks exactly as the original does: the same refusals at the
same lines, none more (review49d, after lexdiff49 made the config lexer read blanks as 2.6 does).

2.6.14 takes each of these shapes (test_config_lexing_vs_openvpn.py compares the structural
ones with Debian's binary): a byte-order mark and CRLF everywhere, inline blocks included; blanks,
a CR or a U+00A0 with a comment after an end tag; an indented end tag; a U+00A0 inside a comment.
The last variant, a word after the end tag, is refused on purpose, which shows the comparison
can fail."""
from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

import tests.installer_configs as ic
from tests.real_profiles import write_all
from tests.unit.test_real_profiles import _errors

END_TAG = re.compile(r"^([ \t]*</[^>]+>)$", re.M)
BLOCK = re.compile(r"(?s)(<([a-z0-9-]+)>\n)(.*?)(</\2>)")

VARIANTS = {
    "bom-and-crlf": lambda t: "\ufeff" + t.replace("\n", "\r\n"),
    "crlf-inside-blocks-only": lambda t: BLOCK.sub(lambda m: m[1] + m[3].replace("\n", "\r\n") + m[4], t),
    "blanks-after-end-tags": lambda t: END_TAG.sub("\\1 \t ", t),
    "cr-after-end-tags": lambda t: END_TAG.sub("\\1\r", t).replace("\n", "\r\n"),
    "nbsp-comment-after-end-tags": lambda t: END_TAG.sub("\\1\u00a0# end", t),
    "indented-end-tags": lambda t: END_TAG.sub("   \\1", t),
    "nbsp-in-comments": lambda t: re.sub(r"^(#.*)$", "\\1 caf\u00e9\u00a0x", t, flags=re.M),
}


@pytest.fixture(scope="module")
def profiles(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("profiles")
    out = dict(write_all(d))
    for inst in ic.INSTALLERS.values():
        (d / inst.name).mkdir()
        r = ic.render(inst, d / inst.name)
        out[f"{inst.name}.conf"], out[f"{inst.name}.ovpn"] = r.server, r.client
    return out


@functools.lru_cache(maxsize=None)
def _verdict(path: Path) -> tuple:
    return tuple(sorted((e.directive, e.line, str(e).split(": ", 2)[-1]) for e in _errors(path)))


def _variant(path: Path, name: str) -> Path:
    q = path.with_name(f"{name}-{path.name}")
    q.write_text(VARIANTS[name](path.read_text()), newline="")
    q.chmod(0o600)
    return q


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_profile_saved_on_windows_checks_as_the_original(profiles, variant):
    with_blocks = [n for n, p in profiles.items() if "</" in p.read_text()]
    assert len(profiles) >= 50 and len(with_blocks) >= 20, (len(profiles), len(with_blocks))
    changed = [n for n, p in profiles.items() if _verdict(_variant(p, variant)) != _verdict(p)]
    assert changed == []


def test_a_word_after_an_end_tag_is_refused_at_the_blocks_line(profiles):
    """The deliberate refusal (2.6 drops the word unread): the comparison above can fail."""
    for name, p in profiles.items():
        text = p.read_text()
        m = END_TAG.search(text)
        if m is None:
            continue
        q = p.with_name(f"word-{p.name}")
        q.write_text(text[:m.end()] + " verify-x509-name x name" + text[m.end():])
        q.chmod(0o600)
        errs = [e for e in _errors(q) if "text after the end tag" in str(e)]
        assert len(errs) == 1 and errs[0].path == str(q), (name, _errors(q))
