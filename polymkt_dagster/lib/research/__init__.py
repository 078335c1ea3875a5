"""Research: favorite signals, datasets, backtests and the agents that write them."""
