"""smoothcert.certificates."""
