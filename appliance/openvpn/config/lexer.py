"""OpenVPN config text → lines of tokens (and inline `<tag>...</tag>` blocks), with OpenVPN's limits.

Syntax as OpenVPN's parse_line (options.c): whitespace separates tokens, `#`/`;` start a comment
where a token could start, "..." quotes with backslash escapes, '...' quotes taking everything
literally, a backslash outside single quotes escapes the next character -- a backslash, a double
quote or a blank only, as there (tokenize).

Limits, as OpenVPN 2.6 (options.h): MAX_PARMS 16 tokens per line (the directive itself counts;
OpenVPN silently drops the rest, which then fails or changes the meaning, so we refuse the line) and
OPTION_PARM_SIZE 256 characters per token (OpenVPN: "Parameter ... is too long (256 chars max)"),
and OPTION_LINE_SIZE: read_config_file reads a line with fgets into 257 bytes and refuses it when
the read filled 256, so a line of 255 bytes or more before its LF (a CR counts; 256 for a last line
without LF) is refused, comments and blank lines too -- measured with Debian's 2.6.14 ("Maximum
option line length (256) exceeded"), which also applies it to client-config-dir files and
client-connect output (logged there, the line then read in pieces, each parsed as a line: here
that file refuses its client, as any line of it we cannot read). Inline blocks are read in pieces of
any length, so certificates and keys are subject to none of these limits. A UTF-8 byte-order mark
before the first line is skipped (its 3 bytes count), as OpenVPN skips it.

Blanks are C's isspace in the C locale 2.6 runs in (space, tab, CR, LF, VT, FF), nothing else:
a U+00A0, U+2028 or \\x1c is part of a word there, never stripped (lines() once used str.strip,
which took them for blanks). An inline block opens on a line whose ONE word (after a `--`) is
`<tag>` -- `<ca> # comment` and `"<ca>"` do, `< ca>` does not -- and ends at the first line that
starts (after blanks) with `</tag>`, as read_inline_file. Compared line by line with Debian's
2.6.14 by tests/unit/test_config_lexing_vs_openvpn.py (helper lexdiff49), which also holds where
ours refuses on purpose what 2.6 reads in a way that hides a fault: a NUL byte in a line (2.6
reads up to it), a backslash before the line's end (2.6 keeps the newline in the word), text after
an end tag on its line (2.6 drops it unread), and more than MAX_PARMS words (2.6 drops the rest).
"""
from __future__ import annotations

from typing import Iterator

from ...frozen_record import FrozenRecord

MAX_PARMS = 16
OPTION_PARM_SIZE = 256
OPTION_LINE_SIZE = 256
_BOM = "\ufeff"
_SPACE = " \t\r\f\v"


class LexError(ValueError):
    """A line that cannot be tokenized; the message says why. `kind` (unterminated-double,
    unterminated-single, too-long, too-many) and `token` (the one too long) let a caller word
    it as OpenVPN does (the management interface)."""

    def __init__(self, message: str, kind: str = "", token: str = "") -> None:
        super().__init__(message)
        self.kind, self.token = kind, token


_INITIAL, _UNQUOTED, _QUOTED, _SQUOTED = range(4)
_END = ""                       # the line's end, which OpenVPN reads as its NUL: a blank, never stored
# The characters a backslash may escape (OpenVPN's parse_line): a backslash, a double quote, a
# blank. Any other is an error there ("Bad backslash"), never the character itself.
_ESCAPABLE = "\\\"" + _SPACE + "\n"


def tokenize(line: str, drop_extra: bool = False, limits: bool = True) -> list[str]:
    """One config line → tokens, as OpenVPN 2.6's parse_line reads it, character by character:
    outside single quotes a backslash escapes the next character, which must be a backslash, a
    double quote or a blank (an escaped blank before a word is skipped: `\\ echo` is `echo`); a
    backslash ending a word leaves the line unfinished; `#`/`;` where a word could start (even
    escaped) begins a comment. Raises LexError (unterminated quote, bad backslash, limits).
    `drop_extra`: what follows the MAX_PARMS-th token is left unread, as OpenVPN's parse_line
    does (the management interface; in a config that changes the meaning, so it is refused there).
    `limits` False: no OPTION_PARM_SIZE per word (OpenVPN's own command line, whose words 2.6's
    parse_argv takes whole: the limit is its config reader's buffer)."""
    out: list[str] = []
    tok: list[str] = []
    state = _INITIAL
    escaped = False
    for c in (*line, _END):
        if not escaped and c == "\\" and state != _SQUOTED:
            escaped = True
            continue
        keep = None
        blank = c == _END or c in _SPACE or c == "\n"
        if state == _INITIAL:
            if not blank:
                if c in "#;":
                    break
                if not escaped and c == '"':
                    state = _QUOTED
                elif not escaped and c == "'":
                    state = _SQUOTED
                else:
                    keep, state = c, _UNQUOTED
        elif state == _UNQUOTED:
            if not escaped and blank:
                out.append("".join(tok))
                tok, state = [], _INITIAL
            else:
                keep = c
        elif state == _QUOTED:
            if not escaped and c == '"':
                out.append("".join(tok))
                tok, state = [], _INITIAL
            else:
                keep = c
        elif c == "'":                  # single quotes: everything literal up to the next one
            out.append("".join(tok))
            tok, state = [], _INITIAL
        else:
            keep = c
        if escaped and keep and keep not in _ESCAPABLE:
            raise LexError("bad backslash: outside single quotes a backslash escapes only a backslash, a "
                           "double quote or a blank (write \\\\ for one backslash; OpenVPN refuses the line "
                           "too)", "bad-backslash")
        escaped = False
        if keep:
            if limits and len(tok) >= OPTION_PARM_SIZE:
                raise LexError(f"parameter {len(out) + 1} is too long (over {OPTION_PARM_SIZE} characters; "
                               f"OpenVPN allows {OPTION_PARM_SIZE})", "too-long", "".join(tok))
            tok.append(keep)
        if drop_extra and len(out) == MAX_PARMS:
            break
        if len(out) > MAX_PARMS:
            raise LexError(f"too many parameters (OpenVPN reads at most {MAX_PARMS} per line, "
                           "the directive included)", "too-many")
    else:
        if state == _QUOTED:
            raise LexError("unterminated double quote", "unterminated-double")
        if state == _SQUOTED:
            raise LexError("unterminated single quote", "unterminated-single")
        if state != _INITIAL:
            # A backslash at the line's end, after a word. 2.6 reads a file's line with its LF
            # (fgets), so there it escapes the LF (or a CR before it) and the word ends in a
            # newline: `push route\\` would send a newline inside a control message, a path or a
            # name would be one no file or certificate has. Only a last line without LF is refused
            # there ("Residual parse state"); here every such line is, naming why (lexdiff49).
            raise LexError("a backslash ends the line: OpenVPN 2.6 reads it as escaping the line's end and "
                           "keeps that newline in the word; refused (remove it, or write \\\\ for a backslash)",
                           "residual")
    return out


class Line(FrozenRecord):
    """One directive line, or one inline block (`inline` holds its text, tokens = [tag, "[inline]"])."""
    number: int
    tokens: list[str] | None      # None: the line could not be tokenized (see error)
    inline: str | None = None
    error: str | None = None      # why the line is unusable
    first_word: str = ""          # for locating an error when tokens is None


def split_lines(text: str) -> list[str]:
    """Lines as OpenVPN reads them (fgets): ended by LF only, a CR before it dropped. Not
    str.splitlines, which also ends a line at VT, FF, \\x1c-\\x1e, U+0085, U+2028 and U+2029:
    a client-connect script that writes the client's common name into its options file (in a
    comment, say) let a certificate named `x\\u2028iroute 198.18.50.0 255.255.255.0` add that
    iroute, where OpenVPN reads one comment line (remap_name keeps U+0085, U+2028 and U+2029,
    as OpenVPN's does). Inside a line they are what OpenVPN takes them for: blanks or text."""
    out = text.split("\n")
    if out and out[-1] == "":
        out.pop()                       # the final line's LF ends it; it starts no empty line
    return [ln[:-1] if ln.endswith("\r") else ln for ln in out]


def _byte_length(line: str) -> int:
    """The bytes `line` took in its file. A config, ccd file or script output is decoded with
    surrogateescape (peernames), so each undecodable byte (a Latin-1 letter) is one lone surrogate
    that encodes back to its one byte, as fgets counts it. Text decoded with errors="replace"
    holds a U+FFFD for such a byte, counted as 1: a real U+FFFD (3 bytes) is then undercounted,
    accepting a line OpenVPN refuses rather than the reverse."""
    if line.isascii():
        return len(line)
    try:
        raw = line.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:                    # a surrogate no byte stands for
        raw = line.encode("utf-8", "surrogatepass")
    return len(raw) - 2 * line.count("\ufffd")


def _too_long(text: str) -> set[int]:
    """Numbers (from 1) of the lines OpenVPN's read_config_file refuses as too long: their bytes
    with the LF that ends them (and a CR before it) reach OPTION_LINE_SIZE."""
    out = set()
    pieces = text.split("\n")
    for n, piece in enumerate(pieces, 1):
        ended = n < len(pieces)
        if (len(piece) + ended >= OPTION_LINE_SIZE // 4 and
                _byte_length(piece) + ended >= OPTION_LINE_SIZE):
            out.add(n)
    return out


def _start_word(raw: str) -> str:
    """What an unusable line starts with, short enough to name it in an error: its first word as
    2.6 splits it (C blanks only), up to a NUL byte, without a `--`."""
    head = raw.split("\0")[0].translate(_TO_SPACE)
    word = _strip_dashes(next((w for w in head.split(" ") if w), ""))
    word = word or ("(NUL)" if "\0" in raw else "(blank)")
    return word if len(word) <= 32 else word[:32] + "..."


_C_BLANKS = _SPACE + "\n"                  # C's isspace in the C locale, which 2.6 runs in
_TO_SPACE = str.maketrans({c: " " for c in _C_BLANKS})
NUL_LINE = ("a NUL byte in the line: OpenVPN 2.6 reads a line only up to it (`disable` followed by one is "
            "`disable` there, and a longer line's rest becomes a line of its own); refused rather than read "
            "differently")


def blank_hint(word: str) -> str:
    """A hint for an unknown directive holding a character that looks blank but is not one to
    2.6 (U+00A0, U+2028, \\x1c ..., a byte-order mark past the file's start): the name shown
    alone would read as a space or nothing."""
    odd = sorted({c for c in word if (c.isspace() and c not in _C_BLANKS) or c == _BOM})
    if not odd:
        return ""
    return (f" (it holds {', '.join(f'U+{ord(c):04X}' for c in odd)}: OpenVPN reads only space, tab, CR, "
            "LF, VT and FF as blanks, and a byte-order mark only at the file's start)")


def without_odd_blanks(word: str) -> str:
    """`word` without the characters that look blank but are not to 2.6 (blank_hint's) at its
    ends: the directive an operator meant by `disable\u00a0` (review49d)."""
    return word.strip("".join(sorted({c for c in word if (c.isspace() and c not in _C_BLANKS) or c == _BOM})))


def _strip_dashes(word: str) -> str:
    """The directive without a leading `--`, as 2.6's bypass_doubledash: only from a word of 3
    characters or more (a lone `--` stays `--`, an unknown directive)."""
    return word[2:] if len(word) >= 3 and word.startswith("--") else word


def _inline_tag(toks: list[str]) -> str | None:
    """The tag of a line that opens an inline block, as 2.6's check_inline_file: the line's only
    token (after the `--`), starting with `<` and ending with `>` -- so `<ca> # comment` and
    `"<ca>"` open one, `< ca>` and `<ca x>` (two tokens) do not. A lone `</ca>` is left a
    directive (unknown, at its line): 2.6 reads it as a block `/ca` that never ends."""
    if len(toks) != 1:
        return None
    t = toks[0]
    if len(t) >= 2 and t[0] == "<" and t[-1] == ">" and not t.startswith("</"):
        return t[1:-1]
    return None


def _after_end_tag(rest: str) -> str | None:
    """Why the text after an inline block's end tag on its line is refused, or None. 2.6 ends the
    block at any line starting (after blanks) with `</tag>` and drops the rest of that line
    unread: `</ca> verify-x509-name ...` would be a security directive silently ignored, so
    anything but blanks or a comment there is refused. Blanks here in Python's wider sense: a
    U+00A0 (a profile pasted from a web page) hides no directive and 2.6 takes it (review49d)."""
    rest = rest.strip()
    if not rest or rest[0] in "#;":
        return None
    return ("text after the end tag on its line: OpenVPN 2.6 ignores it unread; put it on a line of its own "
            "(or make it a comment)")


def _end_line_rest(line: str, ended: bool) -> str | None:
    """Why an end tag's line of 255 bytes or more is refused, or None. 2.6 reads a block's lines
    with fgets into OPTION_LINE_SIZE bytes: the end tag ends the block within the first 255, and
    the line's rest is read as a line of its own -- so a comment after the tag can hide a
    directive past byte 255 (`</ca> #cc...cc verify-x509-name a` applies it in 2.6, where ours
    read one comment), or leave text 2.6 refuses as an unknown option. Taken when that rest is
    blank, or a comment 2.6 takes too (shorter than its line limit)."""
    try:
        raw = line.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = line.encode("utf-8", "surrogatepass")
    raw += b"\n" if ended else b""
    if len(raw) < OPTION_LINE_SIZE:
        return None
    rest = raw[OPTION_LINE_SIZE - 1:]
    shown = rest.decode("utf-8", "replace").strip(_C_BLANKS)
    if not shown or (shown[0] in "#;" and len(rest) < OPTION_LINE_SIZE):
        return None
    return (f"the end tag's line is {len(raw)} bytes: OpenVPN 2.6 reads a block's lines in pieces of "
            f"{OPTION_LINE_SIZE - 1} bytes and the rest of this one, from {shown[:20]!r}, as a line of its own; "
            "put the comment on a line of its own")


def lines(text: str, limits: bool = True) -> Iterator[Line]:
    """Every directive line and inline block of `text`, in order, numbered from 1. `limits`
    False: no line or word length limit (the command line's text: cmdline.py). Blanks are C's
    (space, tab, CR, LF, VT, FF): a U+00A0, U+2028 or \\x1c is text, as in 2.6, not the blank
    Python's str.strip() takes it for."""
    too_long = _too_long(text) if limits else set()
    if text.startswith(_BOM):
        text = text[len(_BOM):]
    raw_lines = split_lines(text)
    i = 0
    while i < len(raw_lines):
        number = i + 1
        # Not stripped: tokenize reads blanks as 2.6 does, and an escaped blank at the end is
        # part of the last word (`a\\<TAB>` is "a<TAB>").
        raw = raw_lines[i]
        start = raw.lstrip(_C_BLANKS)
        i += 1
        if number in too_long:
            yield Line(number, None, error=f"line is too long: OpenVPN 2.6 refuses a line of {OPTION_LINE_SIZE - 1} "
                       "bytes or more (inline blocks aside)", first_word=_start_word(raw))
            continue
        if not start or start[0] in "#;":
            continue
        try:
            toks = tokenize(raw, limits=limits)
        except LexError as e:
            yield Line(number, None, error=str(e), first_word=_start_word(raw))
            continue
        if not toks:
            continue
        if any("\0" in t for t in toks):
            yield Line(number, None, error=NUL_LINE, first_word=_strip_dashes(toks[0].split("\0")[0]) or "(NUL)")
            continue
        toks[0] = _strip_dashes(toks[0])
        tag = _inline_tag(toks)
        if tag is None:
            yield Line(number, toks)
            continue
        close = f"</{tag}>"
        body = []
        while i < len(raw_lines) and not raw_lines[i].lstrip(_C_BLANKS).startswith(close):
            body.append(raw_lines[i])
            i += 1
        if i >= len(raw_lines):
            yield Line(number, None, error=f"inline block <{tag}> is not closed (no line starting {close})",
                       first_word=tag)
            return
        end = raw_lines[i]
        i += 1
        bad = next((k for k, b in enumerate(body) if "\0" in b), None)
        if bad is not None:
            # (at the block's line, as every error about a block: the line number says where)
            yield Line(number, None, error=f"a NUL byte in the block's line {number + 1 + bad}: OpenVPN 2.6 reads "
                       "that line only up to it; refused rather than read differently", first_word=tag)
            continue
        yield Line(number, [tag, "[inline]"], "\n".join(body) + "\n")
        why = _after_end_tag(end.lstrip(_C_BLANKS)[len(close):])
        if why is None and limits and len(end) >= OPTION_LINE_SIZE // 4 - 2:
            full = text.split("\n", i)              # (the end line with its CR, if any: 2.6 counts it)
            why = _end_line_rest(full[i - 1], ended=len(full) > i)
        if why is not None:
            yield Line(number, None, error=f"line {i}: {why}", first_word=tag)
