"""Local stand-ins for the services PolyMkt talks to, for the tests and the benchmarks.

Real servers on loopback, never mocks inside the code under test: Gamma, the Goldsky
orderbook and activity subgraphs and a Polygon JSON-RPC node over the bundled sample and the
recorded payloads in ``recorded/`` (polymarket_apis.py), an OpenAI-compatible embeddings and
chat server, SeaweedFS as S3, PostgreSQL for the Dagster instance, the Dagster daemon, and an
echo server that shows what a client sent. Not part of the product: nothing in
polymkt_dagster imports it.
"""
