"""smoothcert.methods."""
