"""Asset check results from lib/ check outcomes, with one rule for their severity.

lib/ computes plain :class:`CheckOutcome` values (no Dagster); every domain's assets turn
them into ``AssetCheckResult`` here, so "blocking" means the same thing everywhere.
"""

import dagster as dg

from polymkt_dagster.lib.ingest import quality


def check_results(
    outcomes: list[quality.CheckOutcome], blocking: set[str]
) -> list[dg.AssetCheckResult]:
    """One result per outcome: ERROR severity for the names in ``blocking``, else WARN."""
    return [
        dg.AssetCheckResult(
            check_name=o.name,
            passed=o.passed,
            severity=(
                dg.AssetCheckSeverity.ERROR if o.name in blocking else dg.AssetCheckSeverity.WARN
            ),
            description=o.description,
            metadata=dict(o.metadata),
        )
        for o in outcomes
    ]
