"""Where raw rows come from: CSV/JSON dumps, Gamma, Goldsky, Polygon RPC; the registry."""
