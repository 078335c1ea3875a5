"""The source registry is the one list of live sources: settings, sync and CLI go through it."""

from __future__ import annotations

import pytest

from polymkt_dagster.lib.core.config import ConfigError, Settings
from polymkt_dagster.lib.ingest.sources.registry import SOURCES, make_source, source_names


@pytest.mark.parametrize("spec", SOURCES, ids=lambda spec: f"{spec.kind}-{spec.name}")
def test_every_registered_source_is_built_from_settings_under_its_name(spec) -> None:
    source = make_source(Settings(), spec.kind, spec.name)
    try:
        assert source.name == spec.name
    finally:
        source.close()


def test_the_settings_choose_the_source_of_each_kind() -> None:
    settings = Settings.from_env(
        {"POLYMKT_ORDER_FILLED_SOURCE": "rpc", "POLYMKT_CTF_EVENTS_SOURCE": "goldsky"}
    )
    fills, ctf = make_source(settings, "order_filled"), make_source(settings, "ctf_events")
    assert (fills.name, ctf.name) == ("rpc", "goldsky")
    assert type(fills) is not type(make_source(settings, "ctf_events", "rpc"))


def test_an_unknown_source_names_the_setting_and_the_choices() -> None:
    settings = Settings.from_env({"POLYMKT_ORDER_FILLED_SOURCE": "ftp"})
    with pytest.raises(ConfigError, match="POLYMKT_ORDER_FILLED_SOURCE='ftp'") as raised:
        make_source(settings, "order_filled")
    assert "one of goldsky, rpc" in str(raised.value)
    assert source_names("ctf_events") == ("rpc", "goldsky")


def test_the_first_registered_source_of_each_kind_is_the_settings_default() -> None:
    defaults = Settings()
    assert source_names("order_filled")[0] == defaults.order_filled_source
    assert source_names("ctf_events")[0] == defaults.ctf_events_source
