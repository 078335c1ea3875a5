"""Locating and copying source dumps (the bundled sample is the zero-setup default)."""

from __future__ import annotations

import shutil
from pathlib import Path

SOURCE_FILES = (
    "markets.csv",
    "markets.json",
    "markets.jsonl",
    "events.json",
    "events.jsonl",
    "events.csv",
    "orderFilled.csv",
    "trades.csv",
    "ctfEvents.csv",
)


def has_source_files(data_dir: Path) -> bool:
    return any((data_dir / name).is_file() for name in SOURCE_FILES)


def copy_bundled_sample(sample_dir: Path, data_dir: Path) -> list[Path]:
    """Copy the sample's source files into data_dir (never overwriting a user's file)."""
    if not sample_dir.is_dir():
        raise FileNotFoundError(f"bundled sample not found at {sample_dir}")
    data_dir.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in SOURCE_FILES:
        source, target = sample_dir / name, data_dir / name
        if source.is_file() and not target.exists():
            shutil.copyfile(source, target)
            copied.append(target)
    return copied
