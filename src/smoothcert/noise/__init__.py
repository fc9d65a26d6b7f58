"""smoothcert.noise."""
