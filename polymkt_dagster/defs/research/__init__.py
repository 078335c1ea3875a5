"""Research assets: favorite signals, datasets, backtest results."""
