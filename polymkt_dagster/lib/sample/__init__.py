"""Deterministic, realistic Polymarket sample data in poly_data's CSV layout.

The data has single-market events and negRisk "election groups" (one Yes winner per resolved
group), price paths that drift to the outcome (Brownian bridges in logit space, softmax across
the candidates of a group), closed-but-not-resolved markets, open markets with fractional
prices, a pool of noise wallets and five "sharp" wallets that buy the eventual winner early.
Gamma's UMA fields are realistic: the singular ``umaResolutionStatus`` ("resolved"; a few
closed 1/0 markets only "proposed"/"disputed"), an often empty ``umaResolutionStatuses``
history, one near-1/0 and one 50/50 resolution.

Everything is derived from ``numpy.random.default_rng`` streams seeded from ``config.seed``, so
the same config gives the same bytes. Fills are generated per time slice (vectorised numpy,
bounded memory) and streamed, so scales of tens of millions of fills are fine.

Modules, in the order the data is made:

- ``config``: ``SampleConfig`` (scale, seed, window) and how sizes follow from the scale;
- ``layout``: the files' columns and Arrow schemas, the exchange contracts;
- ``questions``: question, description and event-title text (``QuestionWriter``);
- ``records``, ``price_paths``, ``wallets``, ``universe``: ``build_universe`` draws the
  markets, events, outcomes, price paths, activity and wallets;
- ``fills``: orderFilled/trades rows one time slice at a time (``iter_order_fill_batches``,
  ``iter_trade_batches``, ``count_order_fills``);
- ``gamma``: Gamma-shaped ``markets.json``/``events.json`` and markets.csv rows
  (``generate_markets``);
- ``ctf``: the Conditional Tokens position events that cover every wallet's sells;
- ``generate``: ``generate_sample`` writes the six files, ``generate_ctf_events``;
- ``formats``: the text renderings they share; ``bundled``: the sample shipped in data/sample.

This package exports nothing itself: import each name from the module that owns it.
"""
