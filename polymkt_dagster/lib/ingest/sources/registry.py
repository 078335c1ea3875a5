"""The live event sources, registered once: the sync, the CLI and the sensors read this list.

A source is a kind of raw table it feeds (``order_filled`` or ``ctf_events``), a name used
in settings, CLI options and watermark files, and a factory from settings. Adding a source
means writing its module (a class with ``from_settings`` that speaks ``FillSource``), a local
test server, and one ``SourceSpec`` line below (docs/architecture.md "Adding a source").
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from polymkt_dagster.lib.core.config import ConfigError, Settings

if TYPE_CHECKING:
    from polymkt_dagster.lib.ingest.sources.fill_source import FillSource

SourceKind = Literal["order_filled", "ctf_events"]
SOURCES_PACKAGE = "polymkt_dagster.lib.ingest.sources"


@dataclass(frozen=True)
class SourceSpec:
    kind: SourceKind
    name: str
    # "module:Class" under lib/ingest/sources, imported only when the source is built: the
    # CLI lists the names at start-up and must not pay for every client's imports (eth-abi).
    implementation: str
    summary: str

    def build(self, settings: Settings) -> FillSource:
        module, _, class_name = self.implementation.partition(":")
        source_class = getattr(importlib.import_module(f"{SOURCES_PACKAGE}.{module}"), class_name)
        return source_class.from_settings(settings)


# The first source of each kind is the default of its setting.
SOURCES: tuple[SourceSpec, ...] = (
    SourceSpec("order_filled", "goldsky", "goldsky:GoldskySource",
               "Goldsky orderbook subgraph (orderFilledEvents), unix seconds"),
    SourceSpec("order_filled", "rpc", "rpc:RpcSource",
               "Polygon JSON-RPC eth_getLogs on the exchange contracts, blocks"),
    SourceSpec("ctf_events", "rpc", "ctf_events:CtfRpcSource",
               "Polygon JSON-RPC eth_getLogs on ConditionalTokens and the NegRiskAdapter"),
    SourceSpec("ctf_events", "goldsky", "ctf_goldsky:CtfGoldskySource",
               "Goldsky activity subgraph (no ConditionResolution), unix seconds"),
)  # fmt: skip

SETTING_OF_KIND: dict[SourceKind, str] = {
    "order_filled": "POLYMKT_ORDER_FILLED_SOURCE",
    "ctf_events": "POLYMKT_CTF_EVENTS_SOURCE",
}


def source_names(kind: SourceKind) -> tuple[str, ...]:
    return tuple(spec.name for spec in SOURCES if spec.kind == kind)


def configured_name(settings: Settings, kind: SourceKind) -> str:
    return settings.order_filled_source if kind == "order_filled" else settings.ctf_events_source


def source_spec(kind: SourceKind, name: str) -> SourceSpec:
    for spec in SOURCES:
        if spec.kind == kind and spec.name == name:
            return spec
    raise ConfigError(
        f"{SETTING_OF_KIND[kind]}={name!r} must be one of {', '.join(source_names(kind))}"
    )


def make_source(settings: Settings, kind: SourceKind, name: str | None = None) -> FillSource:
    """The source ``name`` of ``kind``, or the one the settings choose."""
    return source_spec(kind, name or configured_name(settings, kind)).build(settings)
