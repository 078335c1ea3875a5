"""The line guard: lines no record can be are blanked, every other byte handed on as it is,
and the line count is exact, whatever the chunk boundaries."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from polymkt_dagster.lib.ingest.csv_lines import (
    REASON_CARRIAGE_RETURN,
    REASON_OPEN_QUOTE,
    REASON_TOO_LONG,
    GuardedLines,
)
from polymkt_dagster.lib.ingest.sources.csv_source import (
    RowAccounting,
    RowAccountingError,
    _quote_open_after,
)


def _reference(data: bytes, max_line: int) -> tuple[list[bytes], list[int], dict[int, str]]:
    """Lines as the guard must hand them on, blank line numbers, blanked line -> reason."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out: list[bytes] = []
    blank: list[int] = []
    bad: dict[int, str] = {}
    for index, line in enumerate(lines):
        number = index + 1
        last = index == len(lines) - 1 and not data.endswith(b"\n")
        content = line[:-1] if line.endswith(b"\r") else line
        reason = None
        if _quote_open_after(line.decode("latin-1"), False):
            reason = REASON_OPEN_QUOTE
        elif b"\r" in (line[:-1] if last else content):
            # a \r that ends neither the line (\r\n) nor the file is a stray one
            reason = REASON_CARRIAGE_RETURN
        elif len(line) > max_line:
            reason = "too long"
        if number > 1 and content == b"" and reason is None:
            blank.append(number)
        if reason and number > 1:
            bad[number] = reason
            out.append(b"")
        else:
            out.append(line)
    return out, blank, bad


def _guarded(path: Path, chunk: int, max_line: int) -> tuple[bytes, GuardedLines]:
    guard = GuardedLines(path, chunk_bytes=chunk, max_line_bytes=max_line)
    parts = []
    while part := guard.read(5):
        parts.append(bytes(part))
    guard.close()
    return b"".join(parts), guard


@settings(max_examples=300, deadline=None)
@given(
    data=st.lists(st.sampled_from([b"a", b",", b'"', b"\n", b"\r\n", b"\r", b"bb"]), max_size=60),
    chunk=st.integers(1, 16),
    max_line=st.integers(4, 40),
)
def test_guard_matches_a_line_by_line_reference(
    tmp_path_factory: pytest.TempPathFactory, data: list[bytes], chunk: int, max_line: int
) -> None:
    raw = b"h,h\n" + b"".join(data)
    path = tmp_path_factory.mktemp("guard") / "f.csv"
    path.write_bytes(raw)
    expected_lines, expected_blank, expected_bad = _reference(raw, max_line)
    handed_on, guard = _guarded(path, chunk, max_line)
    count = guard.count
    assert count.lines == len(expected_lines)
    # a line may have several faults; which one is named is not the point here
    assert {n for n, _, _ in count.blanked} == set(expected_bad)
    if "too long" in expected_bad.values():
        return  # an over-long line is cut from the stream wherever it ends
    got_lines = handed_on.split(b"\n")
    if got_lines and got_lines[-1] == b"" and handed_on.endswith(b"\n"):
        got_lines.pop()
    assert [ln.removesuffix(b"\r") for ln in got_lines] == [
        ln.removesuffix(b"\r") for ln in expected_lines
    ]
    assert sorted(count.blank_lines) == expected_blank


def test_stray_quote_and_quote_to_end_of_file(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b'a,b\n1,2\n"3,4\n5,6\n7,"8\n9,10\n11,"12')
    handed_on, guard = _guarded(path, 4096, 1 << 20)
    assert handed_on == b"a,b\n1,2\n\n5,6\n\n9,10\n\n"  # line 7 handed on blank
    assert [(n, raw) for n, _, raw in guard.count.blanked] == [
        (3, '"3,4'),
        (5, '7,"8'),
        (7, '11,"12'),
    ]
    assert guard.count.records() == 6  # 7 lines, less the header


def test_a_ten_megabyte_line_is_rejected_and_the_next_line_read(tmp_path: Path) -> None:
    path = tmp_path / "f.csv"
    path.write_bytes(b"a,b\n1,2\n" + b"x" * (10 << 20) + b",3\n4,5\n")
    handed_on, guard = _guarded(path, 1 << 20, 1 << 20)
    assert handed_on == b"a,b\n1,2\n\n4,5\n"
    ((line, reason, raw),) = guard.count.blanked
    assert (line, reason) == (3, REASON_TOO_LONG) and len(raw) < 5000


def test_row_accounting_fails_loudly_naming_file_and_numbers() -> None:
    ok = RowAccounting("f.csv", records_in_file=10, rows_read=10, accepted=7, rejected=2,
                       duplicates=1)  # fmt: skip
    assert ok.check() is ok
    with pytest.raises(RowAccountingError, match=r"f\.csv.*10,140 records.*49 accepted"):
        RowAccounting("f.csv", records_in_file=10_140, rows_read=50, accepted=49, rejected=1,
                      duplicates=0).check()  # fmt: skip
    with pytest.raises(RowAccountingError):
        RowAccounting("f.csv", records_in_file=5, rows_read=5, accepted=5, rejected=1,
                      duplicates=0).check()  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80).map(lambda b: bytes(c if c % 3 else 10 for c in b)))
def test_word_wise_newline_count_matches_bytewise(data: bytes) -> None:
    import numpy as np

    from polymkt_dagster.lib.ingest.csv_lines import _newline_stats

    words = np.frombuffer(data, dtype=np.uint64, count=len(data) // 8)
    doubled = sum(1 for i in range(1, len(data)) if data[i] == data[i - 1] == 10)
    assert _newline_stats(np.frombuffer(data, dtype=np.uint8), words) == (
        data.count(b"\n"),
        doubled,
    )
