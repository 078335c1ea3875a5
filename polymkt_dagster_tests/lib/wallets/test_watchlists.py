"""Watchlists: YAML parsing with clear errors, the SQLite store, the union the assets follow."""

from __future__ import annotations

from pathlib import Path

import pytest

from polymkt_dagster.lib.wallets.watchlists import (
    WatchlistError,
    WatchlistStore,
    load_yaml_watchlists,
    watched_set,
)

A = "0x" + "a" * 40
B = "0x" + "b" * 40
C = "0x" + "C" * 40  # mixed case is normalised


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "watchlists.yaml"
    path.write_text(text, "utf-8")
    return path


def test_yaml_watchlists(tmp_path: Path) -> None:
    path = _yaml(
        tmp_path,
        f"""
watchlists:
  - name: sharps
    alert_min_usd: 5000
    cooldown_minutes: 30
    wallets:
      - address: "{A}"
        label: whale
      - "{C}"
  - name: others
    wallets: ["{B}", "{A}"]
""",
    )
    lists = load_yaml_watchlists(path)
    assert [w.name for w in lists] == ["sharps", "others"]
    sharps = lists[0]
    assert sharps.alert_min_usd == 5000 and sharps.cooldown_minutes == 30
    assert [(w.address, w.label) for w in sharps.wallets] == [(A, "whale"), (C.lower(), None)]
    assert lists[1].alert_min_usd == 1000 and lists[1].source == "yaml"
    union = watched_set(lists)
    assert union.addresses == sorted([A, B, C.lower()])
    assert union.alert_min_usd[A] == 1000  # the lowest threshold of the lists it is on
    assert union.cooldown_minutes[A] == 30
    assert union.wallets[A].label == "whale"
    assert union.rules_table().num_rows == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("watchlists: 3", "expected a top-level 'watchlists:' list"),
        ("watchlists:\n  - name: x\n    wallets: ['0x12']", r"watchlists\[0\].wallets\[0\]"),
        ("watchlists:\n  - name: 'bad name!'\n", "must be 1-64 letters"),
        ("watchlists:\n  - name: x\n  - name: x\n", "duplicate watchlist name"),
        ("watchlists:\n  - name: x\n    alert_min_usd: lots\n", "alert_min_usd: 'lots'"),
        ("watchlists: [", "not valid YAML"),
    ],
)
def test_yaml_errors_name_file_and_entry(tmp_path: Path, text: str, message: str) -> None:
    path = _yaml(tmp_path, text)
    with pytest.raises(WatchlistError, match=message) as error:
        load_yaml_watchlists(path)
    assert str(path) in str(error.value)


def test_missing_yaml_means_none(tmp_path: Path) -> None:
    assert load_yaml_watchlists(tmp_path / "absent.yaml") == []


def test_store_crud_is_durable(tmp_path: Path) -> None:
    yaml_path = _yaml(tmp_path, f"watchlists:\n  - name: static\n    wallets: ['{A}']\n")
    store = WatchlistStore(tmp_path / "w.sqlite", yaml_path)
    created = store.create("mine", alert_min_usd=250, cooldown_minutes=5, wallets=[(B, "bee")])
    assert created.source == "cli" and created.wallets[0].label == "bee"
    store.add("mine", C, "sea")
    store.add("mine", C)  # adding again keeps the label
    reopened = WatchlistStore(tmp_path / "w.sqlite", yaml_path)  # a new process, same file
    mine = reopened.get("mine")
    assert [(w.address, w.label) for w in mine.wallets] == [(B, "bee"), (C.lower(), "sea")]
    assert mine.alert_min_usd == 250 and mine.cooldown_minutes == 5
    assert [w.name for w in reopened.all()] == ["static", "mine"]
    reopened.remove("mine", B)
    assert [w.address for w in reopened.get("mine").wallets] == [C.lower()]
    reopened.delete("mine")
    assert [w.name for w in reopened.all()] == ["static"]


def test_store_refuses_with_reasons(tmp_path: Path) -> None:
    yaml_path = _yaml(tmp_path, f"watchlists:\n  - name: static\n    wallets: ['{A}']\n")
    store = WatchlistStore(tmp_path / "w.sqlite", yaml_path)
    with pytest.raises(WatchlistError, match=r"defined in .*watchlists\.yaml"):
        store.create("static")
    with pytest.raises(WatchlistError, match="defined in"):
        store.add("static", B)
    store.create("mine")
    with pytest.raises(WatchlistError, match="already exists"):
        store.create("mine")
    with pytest.raises(WatchlistError, match="not a wallet address"):
        store.add("mine", "0xnothex")
    with pytest.raises(WatchlistError, match="create it first"):
        store.add("nope", A)
    with pytest.raises(WatchlistError, match="is not in watchlist"):
        store.remove("mine", A)
    with pytest.raises(WatchlistError, match="no watchlist named"):
        store.delete("nope")
    with pytest.raises(WatchlistError, match="must not be negative"):
        store.create("neg", alert_min_usd=-1)
    assert [w.name for w in store.all()] == ["static", "mine"]  # nothing half-created
