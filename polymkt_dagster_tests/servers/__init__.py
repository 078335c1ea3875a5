"""Real local servers that stand in for remote services at the network edge in tests."""
