"""Sync sensors: order fills + trades + CTF position events every 10 minutes, markets + events
every hour.

Each sensor launches runs tagged ``polymkt/ingest=live`` (the assets then pull from the live
sources) and ``polymkt/sensor=<name>``. Its cursor holds the watermark as of the last
*successful* run: a tick first looks at the sensor's latest run; while it is in progress the
tick skips, when it succeeded the cursor takes the watermark that run saved in the lake, and
when it failed the cursor stays where it was and the next run resumes from the state file.
Both start running by themselves only when POLYMKT_INGEST_MODE=live.
"""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg

from polymkt_dagster.defs.ingest.assets import (
    CTF_EVENTS_KEY,
    EVENTS_KEY,
    MARKETS_KEY,
    ORDER_FILLED_KEY,
    TRADES_KEY,
)
from polymkt_dagster.defs.ingest.live import INGEST_TAG
from polymkt_dagster.defs.shared.asset_keys import S3_LAKE_KEY
from polymkt_dagster.defs.shared.resources import PolymktResource
from polymkt_dagster.defs.shared.settings import ingest_live, settings_at_load
from polymkt_dagster.defs.shared.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)
from polymkt_dagster.lib.core.config import Settings
from polymkt_dagster.lib.core.http import SourceError
from polymkt_dagster.lib.ingest import sync
from polymkt_dagster.lib.ingest.sync_state import Coverage

SENSOR_TAG = "polymkt/sensor"
FILLS_SENSOR = "order_fills_10min"
MARKETS_SENSOR = "markets_events_hourly"
MARKETS_FRESH_FOR = timedelta(minutes=55)


def _default_status() -> dg.DefaultSensorStatus:
    return dg.DefaultSensorStatus.RUNNING if ingest_live() else dg.DefaultSensorStatus.STOPPED


def _load_cursor(raw: str | None) -> dict[str, Any]:
    try:
        document = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        document = {}
    return document if isinstance(document, dict) else {}


def _latest_run(context: dg.SensorEvaluationContext, name: str) -> dg.DagsterRun | None:
    runs = context.instance.get_runs(filters=dg.RunsFilter(tags={SENSOR_TAG: name}), limit=1)
    return runs[0] if runs else None


def _absorb_latest_run(
    context: dg.SensorEvaluationContext, name: str, cursor: dict[str, Any]
) -> tuple[dg.DagsterRun | None, str | None]:
    """Move the cursor past the latest run if it succeeded; (run, reason to skip now)."""
    run = _latest_run(context, name)
    if run is None:
        return None, None
    if not run.is_finished:
        return run, f"sync run {run.run_id} is still {run.status.value.lower()}"
    if run.run_id != cursor.get("last_run_id"):
        cursor["last_run_id"] = run.run_id
        cursor["last_run_status"] = run.status.value
        if run.status == dg.DagsterRunStatus.SUCCESS:
            cursor["absorbed"] = True
        else:
            cursor["absorbed"] = False
            context.log.warning(
                f"sync run {run.run_id} ended {run.status.value}; the watermark stays at "
                f"{cursor.get('synced_until')} and the next run resumes from the lake's state"
            )
    return run, None


def _extra_keys(settings: Settings) -> list[dg.AssetKey]:
    return [S3_LAKE_KEY] if settings.s3_enabled else []


@dg.sensor(
    name=FILLS_SENSOR,
    minimum_interval_seconds=settings_at_load().fills_sensor_interval_seconds,
    asset_selection=[ORDER_FILLED_KEY, TRADES_KEY, CTF_EVENTS_KEY, S3_LAKE_KEY],
    default_status=_default_status(),
    description="Every 10 minutes: sync order fills and CTF position events and derive trades "
    "for today (and yesterday right after midnight, or while either is behind) from the "
    "configured sources.",
)
def order_fills_sensor(context: dg.SensorEvaluationContext, polymkt: PolymktResource):
    settings, lake = polymkt.settings(), polymkt.lake()
    cursor = _load_cursor(context.cursor)
    _, busy = _absorb_latest_run(context, FILLS_SENSOR, cursor)
    if busy:
        return dg.SkipReason(busy)
    source_name = settings.order_filled_source
    if cursor.get("absorbed") or cursor.get("source") != source_name:
        # Only a successful run moves the cursor: take the watermark it saved in the lake.
        state = sync.fills_state(lake, source_name).load()
        end = Coverage.from_json(state.get("coverage")).end
        cursor["position"] = end
        cursor["source"] = source_name
        cursor["absorbed"] = False
    source = sync.make_fill_source(settings)
    try:
        head = source.head()
        position = cursor.get("position")
        synced_until = source.time_at(position) if position is not None else None
    finally:
        source.close()
    cursor["synced_until"] = synced_until.isoformat() if synced_until else None
    ctf_until, ctf_behind = _ctf_watermark(context, settings, lake)
    cursor["ctf_synced_until"] = ctf_until.isoformat() if ctf_until else None
    if position is not None and head <= position and not ctf_behind:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(
                f"no new fills: {source_name} head {head} is at the watermark {position} "
                f"({cursor['synced_until']})"
            ),
            cursor=json.dumps(cursor),
        )
    now = datetime.now(UTC)
    # The same yesterday rule for both: the run covers yesterday while either is behind it.
    watermarks = [t for t in (synced_until, ctf_until) if t is not None]
    days = sync.days_to_sync(now, min(watermarks) if watermarks else None)
    if synced_until is not None and synced_until < datetime.combine(
        days[0], datetime.min.time(), tzinfo=UTC
    ):
        context.log.warning(
            f"{source_name} is synced only until {synced_until.isoformat()}: days before "
            f"{days[0]} need a range backfill (polymkt sync backfill --start …)"
        )
    tags = {
        INGEST_TAG: "live",
        SENSOR_TAG: FILLS_SENSOR,
        ASSET_PARTITION_RANGE_START_TAG: days[0].isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: days[-1].isoformat(),
    }
    request = dg.RunRequest(
        asset_selection=[ORDER_FILLED_KEY, TRADES_KEY, CTF_EVENTS_KEY, *_extra_keys(settings)],
        tags=tags,
    )
    return dg.SensorResult(run_requests=[request], cursor=json.dumps(cursor))


def _ctf_watermark(
    context: dg.SensorEvaluationContext, settings: Settings, lake: Any
) -> tuple[datetime | None, bool]:
    """(time the CTF events are synced until, whether the source has more) from the lake's
    state, which only a run that merged its batches moves (like the fills' watermark). A CTF
    source that does not answer never stops the fills: the tick goes on with the fills alone
    deciding, and the run's raw/ctf_events step reports the failure."""
    state = sync.ctf_events_state(lake, settings.ctf_events_source).load()
    end = Coverage.from_json(state.get("coverage")).end
    source = sync.make_ctf_source(settings)
    try:
        head = source.head()
        until = source.time_at(end) if end is not None else None
    except SourceError as exc:
        context.log.warning(f"CTF event source did not answer: {exc}")
        return None, False
    finally:
        source.close()
    return until, end is None or head > end


@dg.sensor(
    name=MARKETS_SENSOR,
    minimum_interval_seconds=3600,
    asset_selection=[MARKETS_KEY, EVENTS_KEY, S3_LAKE_KEY],
    default_status=_default_status(),
    description="Every hour: sync markets and events from the Gamma API.",
)
def markets_events_sensor(context: dg.SensorEvaluationContext, polymkt: PolymktResource):
    settings = polymkt.settings()
    cursor = _load_cursor(context.cursor)
    run, busy = _absorb_latest_run(context, MARKETS_SENSOR, cursor)
    if busy:
        return dg.SkipReason(busy)
    if cursor.get("absorbed") and run is not None:
        finished = context.instance.get_run_stats(run.run_id).end_time
        cursor["last_success"] = (
            datetime.fromtimestamp(finished, UTC).isoformat() if finished else None
        )
        cursor["absorbed"] = False
    last = cursor.get("last_success")
    now = datetime.now(UTC)
    if last and now - datetime.fromisoformat(last) < MARKETS_FRESH_FOR:
        return dg.SensorResult(
            skip_reason=dg.SkipReason(
                f"markets and events were synced at {last}, less than "
                f"{int(MARKETS_FRESH_FOR.total_seconds() // 60)} minutes ago"
            ),
            cursor=json.dumps(cursor),
        )
    request = dg.RunRequest(
        asset_selection=[MARKETS_KEY, EVENTS_KEY, *_extra_keys(settings)],
        tags={INGEST_TAG: "live", SENSOR_TAG: MARKETS_SENSOR},
    )
    return dg.SensorResult(run_requests=[request], cursor=json.dumps(cursor))
