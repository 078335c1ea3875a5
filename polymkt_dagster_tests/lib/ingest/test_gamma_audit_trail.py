"""The Gamma audit trail keeps answers with raw U+2028/U+2029 readable line by line."""

from pathlib import Path

from polymkt_dagster.lib.ingest.sources.gamma_client import AuditTrail, read_audit_trail


def test_audit_trail_round_trips_line_and_paragraph_separators(tmp_path: Path) -> None:
    trail = AuditTrail(tmp_path, "markets")
    answers = [
        [{"id": "506884", "description": "Resolves Yes if\u2028the event\u2029happens."}],
        [{"id": "2", "description": "plain"}],
    ]
    for answer in answers:
        trail.write({"path": "/markets/keyset"}, answer, "")
    trail.write({"path": "/markets/keyset"}, None, "not json\u2028at all")
    path = trail.close()
    assert path is not None
    raw = path.read_text(encoding="utf-8")
    assert "\u2028" in raw  # written raw, not escaped
    assert len(raw.splitlines()) > 3  # what a naive reader would split into
    records = read_audit_trail(path)
    assert [r["response"] for r in records] == [*answers, "not json\u2028at all"]
