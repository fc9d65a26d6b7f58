"""smoothcert.stats."""
