"""Streaming a CSV(.gz) file: its header, its records in blocks cut at record boundaries (quotes respected),
and finding where record N starts when a message must name a line. Memory stays at a few blocks."""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from isal import igzip  # ISA-L: the same gzip format, decompressed about 3.5x faster than zlib

from datathon.errors import ProvisionError

CHUNK = 1 << 20  # 1 MiB reads


def open_data(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_header(path: Path) -> list[str]:
    try:
        with open_data(path) as fh:
            line = fh.readline(1 << 16)
    except (OSError, EOFError, zlib.error) as exc:
        raise ProvisionError(f"{path}: cannot read it ({exc})", hint="re-download the file") from None
    return [c.strip().strip('"').lower() for c in line.decode("utf-8", "replace").rstrip("\r\n").split(",")]


@dataclass
class Block:
    data: bytes
    first_record: int  # 1-based number of its first record in the file (the header is record 0)
    records: int
    raw_bytes: int  # compressed bytes consumed so far (for progress)


class RecordCounter:
    """Counts record ends (newlines outside quotes) across chunks."""

    def __init__(self) -> None:
        self.in_quotes = False

    def count(self, chunk: bytes) -> int:
        """Record ends in chunk (no position needed): all newlines minus those inside quotes, at C speed."""
        if not self.in_quotes and b'"' not in chunk:
            return chunk.count(b"\n")
        parts = chunk.split(b'"')
        inside = b"".join(parts[0 if self.in_quotes else 1::2])
        if len(parts) % 2 == 0:  # an odd number of quotes: the chunk ends on the other side
            self.in_quotes = not self.in_quotes
        return chunk.count(b"\n") - inside.count(b"\n")

    def scan(self, chunk: bytes) -> tuple[int, int]:
        """(records ended in chunk, offset just after the last record end, or -1)."""
        if b'"' not in chunk and not self.in_quotes:
            n = chunk.count(b"\n")
            return n, chunk.rfind(b"\n") + 1 if n else -1
        count, last, pos = 0, -1, 0
        for i, part in enumerate(chunk.split(b'"')):
            outside = (i % 2 == 0) != self.in_quotes
            if outside and b"\n" in part:
                count += part.count(b"\n")
                last = pos + part.rfind(b"\n") + 1
            pos += len(part) + 1
        if chunk.count(b'"') % 2:
            self.in_quotes = not self.in_quotes
        return count, last


def _raw(path: Path) -> Iterator[tuple[bytes, int]]:
    """The decompressed bytes after the header, 1 MiB at a time, with the compressed bytes read so far.
    A damaged gzip stream becomes a message that names the file and where it breaks."""
    raw = open(path, "rb")
    fh = igzip.IGzipFile(fileobj=raw, mode="rb") if path.suffix == ".gz" else raw
    try:
        fh.readline(1 << 16)  # the header
        while True:
            try:
                chunk = fh.read(CHUNK)
            except (EOFError, zlib.error, gzip.BadGzipFile, OSError, igzip.BadGzipFile) as exc:
                raise ProvisionError(
                    f"{path}: the compressed data is damaged after {raw.tell():,} bytes ({exc})",
                    hint="re-download the file; a SHA256SUMS.txt next to the data finds such files before loading",
                ) from None
            if not chunk:
                return
            yield chunk, raw.tell()
    finally:
        fh.close()
        raw.close()


def chunks(path: Path) -> Iterator[Block]:
    """Records after the header as they come, for a single COPY stream (no need to cut at record boundaries:
    the server reassembles records). Record ends are still counted, quotes respected."""
    counter = RecordCounter()
    last, pos = b"\n", 0
    for chunk, pos in _raw(path):
        last = chunk[-1:]
        yield Block(chunk, 0, counter.count(chunk), pos)
    if last != b"\n":
        yield Block(b"\n", 0, 1, pos)  # the last record had no newline


def blocks(path: Path, *, block_size: int = 8 * CHUNK) -> Iterator[Block]:
    """Records after the header, in blocks of about block_size bytes that end on a record boundary (for
    several COPY streams of one file). Each chunk is scanned once."""
    counter = RecordCounter()
    record, pos = 1, 0
    pieces: list[bytes] = []  # joined once per block: no quadratic re-copying of a growing buffer
    size, pending_records = 0, 0
    for chunk, pos in _raw(path):
        n, cut = counter.scan(chunk)
        if cut < 0:
            pieces.append(chunk)
            size += len(chunk)
            continue
        pieces.append(chunk[:cut] if cut < len(chunk) else chunk)
        size += cut
        pending_records += n
        if size >= block_size:
            yield Block(b"".join(pieces), record, pending_records, pos)
            record += pending_records
            pieces, size, pending_records = [], 0, 0
        if cut < len(chunk):
            pieces.append(chunk[cut:])
            size += len(chunk) - cut
    data = b"".join(pieces)
    if data:
        if not data.endswith(b"\n"):
            data += b"\n"
            pending_records += 1  # the last record had no newline
        yield Block(data, record, pending_records, pos)


def physical_line(path: Path, record: int) -> int:
    """The 1-based line of the file where record `record` (1-based, after the header) starts. Only used to
    name a line in an error message, so a plain scan is fine."""
    target, lines, ends, in_quotes = record - 1, 2, 0, False
    if target <= 0:
        return 2
    with open_data(path) as fh:
        fh.readline(1 << 16)
        while chunk := fh.read(CHUNK):
            for m in _QUOTE_OR_NEWLINE.finditer(chunk):
                if m.group() == b'"':
                    in_quotes = not in_quotes
                    continue
                lines += 1
                if not in_quotes:
                    ends += 1
                    if ends == target:
                        return lines
    return lines


_QUOTE_OR_NEWLINE = re.compile(rb'["\n]')
