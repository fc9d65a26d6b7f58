"""smoothcert.data."""
