"""The one place where the definitions read settings while the code location loads.

Assets and sensors read settings at run time through the ``polymkt`` resource
(:meth:`PolymktResource.settings`), so a changed variable takes effect on the next run. A few
values cannot wait for a run because they are part of the definitions Dagster loads: whether
the curated assets carry automation conditions (``POLYMKT_ANALYTICS_MODE``), the sensors'
default status (``POLYMKT_INGEST_MODE``, ``POLYMKT_ANALYTICS_MODE``) and minimum intervals
(``POLYMKT_FILLS_SENSOR_INTERVAL_SECONDS``, ``POLYMKT_AUTOMATION_INTERVAL_SECONDS``), and the
resources' configuration. Those are read here and nowhere else, so a newcomer finds every
load-time dependency on the environment from this function's callers.
"""

from polymkt_dagster.lib.core.config import Settings


def settings_at_load() -> Settings:
    """The settings of the environment the code location loads in (read when called, so a
    test that changes the environment and builds a definition again sees its change)."""
    return Settings.from_env()


def analytics_on() -> bool:
    """POLYMKT_ANALYTICS_MODE=on: curated assets are automated and the analytics sensors run."""
    return settings_at_load().analytics_mode == "on"


def ingest_live() -> bool:
    """POLYMKT_INGEST_MODE=live: the sync sensors start running by themselves."""
    return settings_at_load().ingest_mode == "live"
