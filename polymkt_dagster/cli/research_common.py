"""What `polymkt datasets` and `polymkt backtest` share: the research store, the user errors
of the research code, the agent's OpenAI client, and registering a dataset or backtest as a
dynamic partition in the Dagster instance (when one exists).

Datasets and backtests are stored in ``<data dir>/research.sqlite``; when a Dagster instance
exists (DAGSTER_HOME, or ./.dagster_home after `polymkt pipeline`), new ones are registered as
dynamic partitions so the UI can materialize them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from polymkt_dagster.cli.common import err, fail
from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.core.terminal import escape

if TYPE_CHECKING:
    from polymkt_dagster.lib.research.research_store import ResearchStore


def research_store(settings: Settings) -> ResearchStore:
    from polymkt_dagster.lib.research.research_store import ResearchStore

    return ResearchStore.in_data_dir(settings.data_dir)


@contextmanager
def user_errors() -> Iterator[None]:
    """Errors a user can fix become one red line and exit code 2, never a traceback."""
    from pydantic import ValidationError

    from polymkt_dagster.lib.analytics.election_groups import OverridesFileError
    from polymkt_dagster.lib.research.backtest_runs import BacktestRunError
    from polymkt_dagster.lib.research.research_store import StoreError

    try:
        yield
    except (StoreError, BacktestRunError, OverridesFileError) as exc:
        fail(str(exc))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
        )
        fail(f"invalid options: {problems}")


@contextmanager
def agent_client(settings: Settings) -> Iterator[Any]:
    """An OpenAI client from dagster-openai's OpenAIResource, or None without a key."""
    if not settings.openai_api_key:
        yield None
        return
    import dagster as dg
    from dagster_openai import OpenAIResource

    resource = OpenAIResource(
        api_key=settings.openai_api_key, base_url=settings.openai_base_url or None
    )
    with (
        dg.build_op_context(resources={"openai": resource}) as context,
        context.resources.openai.get_client(context) as client,
    ):
        yield client


def register_partition(kind: str, key: str, *, remove: bool = False) -> None:
    """Add (or remove) the dynamic partition ``key`` of ``kind`` in the existing instance."""
    from polymkt_dagster.cli.dagster_home import existing_instance

    instance = existing_instance()
    if instance is None:
        if not remove:
            err.print(
                f"[dim]No Dagster instance (DAGSTER_HOME unset): research_registry_sensor "
                f"adds the {kind} partition {escape(repr(key))} when Dagster runs.[/]"
            )
        return
    if remove:
        if instance.has_dynamic_partition(kind, key):
            instance.delete_dynamic_partition(kind, key)
        return
    if not instance.has_dynamic_partition(kind, key):
        instance.add_dynamic_partitions(kind, [key])
    err.print(f"Registered {kind} partition {escape(repr(key))} in the Dagster instance.")


def show_interpretation(document: dict[str, Any]) -> None:
    """What the agent understood of a sentence, assumed, and could not read (on stderr)."""
    err.print(f"Read by: {escape(document['source'])}")
    for label, key in (("understood", "understood"), ("assumed", "assumptions")):
        for line in document[key]:
            err.print(f"  [green]{label}:[/] {escape(line)}")
    for line in document["not_understood"]:
        err.print(f"  [bold yellow]not understood:[/] {escape(line)}")
    for line in document["warnings"]:
        err.print(f"  [yellow]warning:[/] {escape(line)}")
