"""Getting data in: file bootstrap, live sync, merge into the raw tables, trade derivation."""
