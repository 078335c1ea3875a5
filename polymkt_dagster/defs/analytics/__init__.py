"""Analytics layer assets: price bars, market summary, election groups."""
