"""Asset keys named by a domain that does not own them and sits upstream of their owner.

Downstream domains import their parents' keys from the parent's module (analytics from
ingest, serving from wallets). The sync sensors of defs/ingest also request the S3 mirror
(defs/serving/s3_lake) when it is enabled; the key lives here so the raw layer does not
import the serving layer.
"""

import dagster as dg

S3_LAKE_KEY = dg.AssetKey(["serving", "s3_lake"])
