"""smoothcert.runner."""
