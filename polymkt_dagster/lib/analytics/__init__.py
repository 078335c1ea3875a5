"""The derived analytics layer: price bars, market summary, resolutions, election groups."""
