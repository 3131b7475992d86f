"""Reading a plain SQL dump (pg_dump's default format, also .sql.gz / .sql.zst) as a stream of statements, psql
meta-commands and COPY data blocks, each with the line it starts on. Nothing is unpacked to disk and memory stays
at one read buffer plus the statement being read.

pg_dump's plain format is regular: every SQL statement ends with `;` at the end of a line, and the data of a table
follows its `COPY ... FROM stdin;` statement, one row per line, up to a line holding only `\\.`. Cutting the file
at `;` + newline is still wrong in two places, and both occur in real dumps:

- COPY data is not SQL: a row may hold `;`, quotes or `$$` (`note;\\nnext 'q' $$`) and must not be lexed at all.
  It is handed on untouched, in large chunks, until the terminator line; text-format COPY escapes a backslash as
  `\\\\`, so a data line can never be exactly `\\.`.
- Inside a statement a `;` + newline may be part of a string ('a comment;' + newline + 'continued'), of a quoted
  identifier, or of a function body in dollar quotes ($$ ... RETURN 1;\\nEND; $$), which pg_dump writes as the
  author wrote it. So statements are lexed: single-quoted strings (with '' doubling, and backslash escapes in
  E'...'), double-quoted identifiers, dollar quotes with their tag ($body$ ... $body$; a `$` inside an identifier
  such as a$b or a positional $1 opens none), -- comments and nested /* */ comments. Only a `;` outside all of
  them ends a statement.

The lexer works on bytes: every character that matters is ASCII, and in every server encoding (the only ones
pg_dump writes) an ASCII byte is never part of a multi-byte character. Statements go to the server as bytes, so
no decoding is needed either.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from isal import igzip

from datathon.errors import ProvisionError

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

_IDENT_BYTE = re.compile(rb"[A-Za-z0-9_$\x80-\xff]")
_DOLLAR_TAG = re.compile(rb"\$(?:[A-Za-z_\x80-\xff][A-Za-z0-9_\x80-\xff]*)?\$")
_TOP = re.compile(rb"['\";$]|--|/\*")  # what changes the lexer's state at the top level of a statement
_COMMENT = re.compile(rb"/\*|\*/")
_E_STRING = re.compile(rb"\\.|''|'", re.S)
_COPY_FROM_STDIN = re.compile(rb"^COPY\s.*\sFROM\s+stdin\b", re.I | re.S)


class DumpFormatError(ProvisionError):
    """The stream is not a complete plain dump (truncated, or not one at all)."""


@dataclass
class Statement:
    text: bytes  # the statement as written, up to and including its `;`
    line: int  # the line it starts on (1-based)
    head: str  # upper-cased, comments removed, strings, identifiers and bodies masked, whitespace collapsed

    @property
    def is_copy(self) -> bool:
        return self.head.startswith("COPY ") and bool(_COPY_FROM_STDIN.match(self.text))

    @property
    def target(self) -> str:
        """The second word as written (the table of a COPY, say)."""
        words = self.text.split(None, 2)
        return words[1].decode("utf-8", "replace") if len(words) > 1 else ""


@dataclass
class Meta:
    """A psql meta-command line (\\restrict, \\connect, ...)."""

    text: bytes
    line: int

    @property
    def command(self) -> str:
        return self.text.split(None, 1)[0].decode("ascii", "replace")


@dataclass
class Copy:
    """A COPY statement and, from `chunks`, its data (whole lines, the terminator left out). Data not read by the
    consumer is skipped when the next item is asked for."""

    statement: Statement
    chunks: Iterator[bytes] = field(repr=False)


Item = Statement | Meta | Copy


class _Stream:
    """A read buffer with readline and 'data up to the COPY terminator' (which a BufferedReader cannot push back)."""

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self.buf = b""
        self.pos = 0
        self.eof = False
        self.line = 0  # lines consumed so far

    def _fill(self) -> bool:
        if self.eof:
            return False
        chunk = self.raw.read(CHUNK)
        if not chunk:
            self.eof = True
            return False
        self.buf = self.buf[self.pos:] + chunk
        self.pos = 0
        return True

    def readline(self) -> bytes:
        while True:
            i = self.buf.find(b"\n", self.pos)
            if i >= 0:
                line, self.pos = self.buf[self.pos:i + 1], i + 1
                self.line += 1
                return line
            if not self._fill():
                line, self.pos = self.buf[self.pos:], len(self.buf)
                if line:
                    self.line += 1
                return line

    def copy_data(self, what: str) -> Iterator[bytes]:
        """Whole data lines up to the terminator line `\\.`, which is consumed and not yielded. Every pass starts at
        the beginning of a line, so the terminator is looked for only there."""
        while True:
            while len(self.buf) - self.pos < 4 and self._fill():
                pass
            rest = self.buf[self.pos:self.pos + 4]
            for term in (b"\\.\n", b"\\.\r\n", b"\\."):
                if rest.startswith(term) and (term != b"\\." or len(rest) == 2):  # a bare `\.` only at the very end
                    self.pos += len(term)
                    self.line += 1
                    return
            end = self.buf.find(b"\n\\.\n", self.pos)
            cut = end + 1 if end >= 0 else self.buf.rfind(b"\n", self.pos) + 1
            if cut > self.pos:
                data, self.pos = self.buf[self.pos:cut], cut
                self.line += data.count(b"\n")
                yield data
            if end < 0 and not self._fill():
                raise DumpFormatError(f"the dump ends inside the data of {what} (line {self.line}): it is truncated",
                                      hint="copy the dump again (or make it again); nothing of it was restored")


def _mask(head: bytearray, piece: bytes) -> None:
    if len(head) < 400:  # enough to tell what a statement is; a 30 kB lowrite() is not kept twice
        head += piece


class _Lexer:
    """State carried from line to line while a statement is read."""

    def __init__(self) -> None:
        self.quote: bytes | None = None  # b"'", b"E'", b'"', a dollar tag, or b"/*"
        self.depth = 0  # nesting of /* */ comments

    def scan(self, line: bytes, start: int, head: bytearray) -> int:
        """From `start`, the offset just after the first top-level `;` in `line`, or -1 if there is none.
        Top-level text (and placeholders for what is quoted) goes into `head`."""
        i = start
        n = len(line)
        while i < n:
            q = self.quote
            if q is None:
                m = _TOP.search(line, i)
                if m is None:
                    _mask(head, line[i:])
                    return -1
                _mask(head, line[i:m.start()])
                tok = m.group()
                i = m.end()
                if tok == b";":
                    _mask(head, b";")
                    return i
                if tok == b"--":
                    return -1  # the rest of the line is a comment
                if tok == b"/*":
                    self.quote, self.depth = b"/*", 1
                elif tok == b"'":
                    prev = line[m.start() - 1:m.start()]
                    before = line[m.start() - 2:m.start() - 1] if m.start() >= 2 else b""
                    escaped = prev in (b"E", b"e") and not _IDENT_BYTE.match(before or b" ")
                    self.quote = b"E'" if escaped else b"'"
                    _mask(head, b"'?")
                elif tok == b'"':
                    self.quote = b'"'
                    _mask(head, b'"?')
                else:  # `$`: a dollar quote opens only where an identifier or a parameter ($1) does not go on
                    prev = line[m.start() - 1:m.start()] if m.start() else b""
                    d = _DOLLAR_TAG.match(line, m.start())
                    if d and not (prev and _IDENT_BYTE.match(prev)):
                        self.quote = d.group()
                        i = d.end()
                        _mask(head, b"$?")
                    else:
                        _mask(head, b"$")
            elif q == b"/*":
                m = _COMMENT.search(line, i)
                if m is None:
                    return -1
                i = m.end()
                self.depth += 1 if m.group() == b"/*" else -1
                if self.depth == 0:
                    self.quote = None
                    _mask(head, b" ")
            elif q == b"'" or q == b'"':
                j = line.find(q, i)
                if j < 0:
                    return -1
                if line[j + 1:j + 2] == q:  # '' or "" inside: still quoted
                    i = j + 2
                    continue
                i = j + 1
                self.quote = None
                _mask(head, q)
            elif q == b"E'":
                while True:
                    m = _E_STRING.search(line, i)
                    if m is None:
                        return -1
                    i = m.end()
                    if m.group() == b"'":
                        self.quote = None
                        _mask(head, b"'")
                        break
            else:  # a dollar quote: only its own tag closes it
                j = line.find(q, i)
                if j < 0:
                    return -1
                i = j + len(q)
                self.quote = None
                _mask(head, b"$")
        return -1


def _head(head: bytearray) -> str:
    return " ".join(head.decode("utf-8", "replace").split()).upper()


def read_items(raw: BinaryIO) -> Iterator[Item]:
    """Statements, meta-commands and COPY blocks of a plain dump, in order."""
    stream = _Stream(raw)
    lexer = _Lexer()
    pending: Copy | None = None
    text: list[bytes] = []
    head = bytearray()
    first = 0
    while True:
        if pending is not None:
            for _ in pending.chunks:  # what the consumer left unread
                pass
            pending = None
        line = stream.readline()
        if not line:
            if lexer.quote is not None or head.strip():
                raise DumpFormatError(f"the dump ends inside the statement that starts on line {first}: "
                                      "it is truncated", hint="copy the dump again (or make it again); "
                                                              "nothing of it was restored")
            return
        if not text and lexer.quote is None and line.lstrip().startswith(b"\\"):
            yield Meta(line.strip(), stream.line)
            continue
        start = 0
        while True:
            if not text and lexer.quote is None:  # where a statement starts: skip blank space
                stripped = len(line) - len(line[start:].lstrip())
                if stripped >= len(line):
                    break
                start = stripped
                first = stream.line
            end = lexer.scan(line, start, head)
            if end < 0:
                text.append(line[start:])
                if not head.strip() and lexer.quote is None:
                    text.clear()  # only a comment so far: a statement starts later
                    head.clear()
                break
            text.append(line[start:end])
            stmt = Statement(b"".join(text), first, _head(head))
            text, head = [], bytearray()
            if stmt.is_copy:
                pending = Copy(stmt, stream.copy_data(stmt.target))
                yield pending
                break  # the data starts on the next line
            yield stmt
            start = end


def open_plain(path: Path) -> tuple[BinaryIO, subprocess.Popen | None]:
    """The decompressed bytes of a plain dump (by its first bytes, not its name), and the decompressing process
    to wait for, if any. gzip is read with ISA-L in this process; zstd through the `zstd` program, as a pipe."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic.startswith(GZIP_MAGIC):
        return igzip.open(path, "rb"), None  # type: ignore[return-value]
    if magic == ZSTD_MAGIC:
        try:
            proc = subprocess.Popen(["zstd", "-dcq", "--", str(path)], stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise ProvisionError(f"{path} is zstd-compressed and the `zstd` program is not installed",
                                 hint="apt-get install zstd, then run `datathon up` again") from None
        return proc.stdout, proc  # type: ignore[return-value]
    return open(path, "rb"), None


def iter_dump(path: Path) -> Iterator[Item]:
    """read_items over the file, decompressing as it goes; a damaged compressed file is named as such."""
    raw, proc = open_plain(path)
    finished = False
    try:
        yield from read_items(raw)
        finished = True
    except (OSError, EOFError) as exc:
        raise DumpFormatError(f"{path}: the compressed data is damaged ({exc})",
                              hint="copy the dump again; nothing of it was restored") from None
    finally:
        raw.close()
        if proc is not None:
            if not finished:
                proc.kill()  # the reader stopped early (an error, or only the start was wanted)
            _, err = proc.communicate()
            if finished and proc.returncode != 0:
                raise DumpFormatError(f"{path}: the compressed data is damaged "
                                      f"({err.decode(errors='replace').strip() or f'zstd exit {proc.returncode}'})",
                                      hint="copy the dump again; nothing of it was restored")
