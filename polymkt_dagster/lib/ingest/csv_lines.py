"""A CSV file's bytes with every line that cannot be one record blanked out, and its count.

In a file whose values never span lines (``orderFilled.csv``: hex, digits, timestamps), one
physical line is one record. A CSV parser does not know that: a stray ``"`` opens a quoted
value that runs over the following lines, up to the next stray quote or the end of the file,
and every row on the way is lost inside one cell. ``GuardedLines`` hands the parser the file
with such lines replaced by empty lines (the line count stays, so line numbers stay
physical) and keeps each as a structural reject with its line number, reason and raw text.
The parser then re-synchronises at the next line.

Lines blanked: a quote that is still open where the line ends (the quote rules of pyarrow and
Python's ``csv``: a quote opens a value only at the start of a cell, ``""`` inside it is a
quote, the value closes at the next lone quote), a carriage return that does not end the line
(parsers take it as a line break), a line longer than ``MAX_LINE_BYTES``.

It also counts, independently of any parser, the physical lines and which of them are blank:
the import checks its row accounting against that count.

Plain dumps hold no quote, no stray carriage return, no long line: per block of
``chunk_bytes`` that costs a few ``bytes.count``/``find`` calls (memchr speed). The compiled
quote scan runs only over blocks that contain a quote.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
from numba import types as nt

MAX_LINE_BYTES = 1 << 20  # a fill line is ~300 bytes; a longer line is no record of ours
RAW_PREVIEW_CHARS = 4_000  # raw text kept in the rejects for a blanked line
CHUNK_BYTES = 4 << 20

REASON_OPEN_QUOTE = (
    "unterminated quote: a quoted value opened on this line does not close before the line "
    "ends (values never span lines in this file)"
)
REASON_CARRIAGE_RETURN = "carriage return inside the line (parsers read it as a line break)"
REASON_TOO_LONG = f"line longer than {MAX_LINE_BYTES:,} bytes"

_NL, _CR, _QUOTE, _COMMA = 10, 13, 34, 44
# Quote states: at a cell's start, inside an unquoted cell, inside a quoted value, and just
# after a quote inside a quoted value (closing it, or the first half of "").
_START, _UNQUOTED, _QUOTED, _AFTER_QUOTE = 0, 1, 2, 3


@numba.njit(
    nt.int64(nt.Array(nt.uint8, 1, "C", readonly=True), nt.int64[::1], nt.int64[::1]),
    nogil=True,
    cache=True,
)
def _open_quote_lines(data: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> int:
    """Lines of ``data`` where a quoted value is still open at the end of the line (or of
    ``data``): their [start, stop) into ``starts``/``stops`` (stop at the newline, a
    trailing carriage return included); returns how many."""
    found = 0
    state = _START
    line_start = 0
    for i in range(len(data)):
        byte = data[i]
        if byte == _NL:
            if state == _QUOTED:
                starts[found] = line_start
                stops[found] = i
                found += 1
            state = _START
            line_start = i + 1
        elif byte == _QUOTE:
            if state == _START:
                state = _QUOTED
            elif state == _QUOTED:
                state = _AFTER_QUOTE
            elif state == _AFTER_QUOTE:
                state = _QUOTED  # "" inside a quoted value
        elif byte == _COMMA:
            if state != _QUOTED:
                state = _START
        elif state == _START or state == _AFTER_QUOTE:  # noqa: SIM109 - plain compares for numba
            state = _UNQUOTED
    if state == _QUOTED and line_start < len(data):
        starts[found] = line_start
        stops[found] = len(data)
        found += 1
    return found


_LOW_SEVEN = np.uint64(0x7F7F7F7F7F7F7F7F)
_NEWLINES = np.uint64(0x0A0A0A0A0A0A0A0A)
_BYTE_ONES = np.uint64(0x0101010101010101)


@numba.njit(inline="always")
def _newline_bits(word: np.uint64) -> np.uint64:
    """Bit 7 of each byte of ``word`` set exactly when that byte is a newline (SWAR, no
    carries between bytes)."""
    x = word ^ _NEWLINES
    return ~(((x & _LOW_SEVEN) + _LOW_SEVEN) | x | _LOW_SEVEN)


@numba.njit(inline="always")
def _bytes_set(bits: np.uint64) -> np.int64:
    """How many bytes of ``bits`` have bit 7 set (the sum of the bytes of ``bits >> 7``)."""
    return np.int64(((bits >> np.uint64(7)) * _BYTE_ONES) >> np.uint64(56))


@numba.njit(
    nt.UniTuple(nt.int64, 2)(
        nt.Array(nt.uint8, 1, "C", readonly=True), nt.Array(nt.uint64, 1, "C", readonly=True)
    ),
    nogil=True,
    cache=True,
)
def _newline_stats(data: np.ndarray, words: np.ndarray) -> tuple[int, int]:
    """Newlines in ``data`` and newlines right after a newline (blank lines), one pass, 8
    bytes at a time; ``words`` is ``data``'s first ``len(data) // 8 * 8`` bytes as uint64."""
    newlines = 0
    doubled = 0
    previous_last = np.uint64(0)  # bit 63: the byte before this word was a newline
    for k in range(len(words)):
        bits = _newline_bits(words[k])
        if bits:
            newlines += _bytes_set(bits)
            after_newline = (bits << np.uint64(8)) | (previous_last >> np.uint64(56))
            doubled += _bytes_set(bits & after_newline)
        previous_last = bits & np.uint64(0x8000000000000000)
    previous = previous_last != 0
    for i in range(len(words) * 8, len(data)):
        is_newline = data[i] == _NL
        newlines += is_newline
        doubled += is_newline and previous
        previous = is_newline
    return newlines, doubled


@dataclass
class LineCount:
    """What ``GuardedLines`` saw of the whole file (complete once it was read to the end)."""

    lines: int = 0  # physical lines, the header included; a last line without \n counts
    blank_lines: list[int] = field(default_factory=list)  # empty (or lone \r) lines
    # (line, reason, raw text) of the lines handed on blank
    blanked: list[tuple[int, str, str]] = field(default_factory=list)

    def records(self, header_lines: int = 1) -> int:
        """Lines that are records: every line after the header but the blank ones."""
        return max(self.lines - header_lines, 0) - len(self.blank_lines)

    def not_rows(self) -> list[int]:
        """Lines a parser of the guarded bytes sees as blank (for ``physical_line``)."""
        return sorted(self.blank_lines + [line for line, _, _ in self.blanked])


def _raw_text(data: bytes) -> str:
    text = data.rstrip(b"\r").decode("utf-8", errors="backslashreplace").replace("\x00", "\\x00")
    return text if len(text) <= RAW_PREVIEW_CHARS else text[:RAW_PREVIEW_CHARS] + "…"


class GuardedLines(io.RawIOBase):
    """A readable binary stream of ``path`` with the lines no record can be blanked out.

    Line 1 (the header) is handed on as it is. ``count`` is complete at end of stream.
    """

    def __init__(
        self,
        path: Path,
        *,
        chunk_bytes: int = CHUNK_BYTES,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        super().__init__()
        self.path = path
        self.chunk_bytes = chunk_bytes
        self.max_line_bytes = max_line_bytes
        self.count = LineCount()
        self._too_long = f"line longer than {max_line_bytes:,} bytes"
        self._file = path.open("rb")
        self._carry = b""
        self._pending = b""
        self._offset = 0
        self._skipping = False  # inside a line longer than max_line_bytes
        self._done = False

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self._file.close()
        super().close()

    def read(self, size: int = -1) -> bytes | bytearray:
        """Whole guarded pieces when ``size`` allows (no copy), else a part of one."""
        while self._offset >= len(self._pending) and not self._done:
            self._pending, self._offset = self._next_piece(), 0
        rest = len(self._pending) - self._offset
        if size < 0 or size >= rest:
            out = self._pending if self._offset == 0 else self._pending[self._offset :]
            self._pending, self._offset = b"", 0
            return out
        out = self._pending[self._offset : self._offset + size]
        self._offset += size
        return out

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def read_all_lines(self) -> LineCount:
        """Read to the end (when only the count is wanted)."""
        while not self._done:
            self._next_piece()
        return self.count

    def _next_piece(self) -> bytes | bytearray:
        """The next run of whole lines, guarded (read into a fresh buffer: one copy)."""
        while True:
            carry = self._carry
            buffer = bytearray(len(carry) + self.chunk_bytes)
            buffer[: len(carry)] = carry
            got = self._file.readinto(memoryview(buffer)[len(carry) :])
            if not got:
                self._done = True
                self._carry = b""
                return self._guard(carry, final=True)
            del buffer[len(carry) + got :]
            if self._skipping:
                cut = buffer.find(b"\n")
                if cut < 0:
                    continue
                self._skipping = False
                del buffer[: cut + 1]
            cut = buffer.rfind(b"\n")
            if cut < 0:
                if len(buffer) > self.max_line_bytes:
                    return self._overlong(bytes(buffer))
                self._carry = bytes(buffer)
                continue
            self._carry = bytes(buffer[cut + 1 :])
            del buffer[cut + 1 :]  # shrinks in place
            return self._guard(buffer, final=False)

    def _overlong(self, start_of_line: bytes) -> bytes:
        """A line past ``max_line_bytes`` with no end in sight: rejected, skipped to its end."""
        self.count.lines += 1
        line = self.count.lines
        self.count.blanked.append((line, self._too_long, _raw_text(start_of_line)))
        self._carry = b""
        self._skipping = True
        return b"\n"

    def _guard(self, piece: bytes | bytearray, *, final: bool) -> bytes | bytearray:
        base = self.count.lines  # lines before this piece
        data = np.frombuffer(piece, dtype=np.uint8)
        newlines, doubled = _newline_stats(
            data, np.frombuffer(piece, dtype=np.uint64, count=len(piece) // 8)
        )
        lines = newlines + (1 if piece and piece[-1] != _NL else 0)
        self.count.lines += lines
        if not lines:
            return piece
        bad: list[tuple[int, int, str]] = []  # [start, stop) of line contents, reason
        if b'"' in piece:
            starts = np.empty(lines, dtype=np.int64)
            stops = np.empty(lines, dtype=np.int64)
            found = _open_quote_lines(data, starts, stops)
            bad += [
                (int(start), int(stop), REASON_OPEN_QUOTE)
                for start, stop in zip(starts[:found], stops[:found], strict=True)
            ]
        if (
            doubled
            or piece[0] == _NL
            or b"\r" in piece  # CRLF lines, or a stray carriage return
            or self._may_hold_long_line(piece)
        ):
            bad += self._line_checks(piece, base)
        if not bad:
            return piece
        return self._blank_out(piece, base, bad)

    def _may_hold_long_line(self, piece: bytes | bytearray) -> bool:
        """True when some window of half the limit holds no newline (a line past the limit
        always contains one)."""
        half = max(self.max_line_bytes // 2, 1)
        if len(piece) <= half:
            return False
        return any(piece.find(b"\n", at, at + half) < 0 for at in range(0, len(piece) - half, half))

    def _line_checks(self, piece: bytes | bytearray, base: int) -> list[tuple[int, int, str]]:
        """Blank lines (noted), stray carriage returns and long lines (returned as bad)."""
        data = np.frombuffer(piece, dtype=np.uint8)
        ends = np.flatnonzero(data == _NL)
        if len(piece) and piece[-1] != _NL:
            ends = np.append(ends, len(piece))
        starts = np.concatenate([[0], ends[:-1] + 1])
        content_ends = ends.copy()
        crlf = (ends > starts) & (data[np.maximum(ends - 1, 0)] == _CR)
        content_ends[crlf] -= 1
        blank = np.flatnonzero(content_ends == starts)
        self.count.blank_lines += [base + int(k) + 1 for k in blank if base + int(k) + 1 > 1]
        bad: list[tuple[int, int, str]] = []
        cr_positions = np.flatnonzero(data == _CR)
        if len(cr_positions):
            following = data[np.minimum(cr_positions + 1, len(data) - 1)]
            stray = cr_positions[(cr_positions + 1 >= len(data)) | (following != _NL)]
            # a lone \r as the very last byte ends the file's last line: not stray
            stray = stray[stray != len(data) - 1] if piece.endswith(b"\r") else stray
            for k in np.unique(np.searchsorted(ends, stray)):
                bad.append((int(starts[k]), int(ends[k]), REASON_CARRIAGE_RETURN))
        for k in np.flatnonzero(ends - starts > self.max_line_bytes):
            bad.append((int(starts[k]), int(ends[k]), self._too_long))
        return bad

    def _blank_out(
        self, piece: bytes | bytearray, base: int, bad: list[tuple[int, int, str]]
    ) -> bytes:
        kept: list[bytes] = []
        at = 0
        line, counted_to = base + 1, 0  # the line number at offset counted_to
        for start, stop, reason in sorted(bad):
            if start < at:
                continue  # one reason per line: the first found
            line += piece.count(b"\n", counted_to, start)
            counted_to = start
            if line == 1:
                continue  # the header is the reader's business
            self.count.blanked.append((line, reason, _raw_text(piece[start:stop])))
            kept.append(piece[at:start])
            at = stop
        kept.append(piece[at:])
        if at == len(piece) and piece and piece[-1] != _NL:
            kept.append(b"\n")  # a blanked last line still ends: the parser sees it blank
        return b"".join(kept)
