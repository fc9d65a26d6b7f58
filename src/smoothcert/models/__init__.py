"""smoothcert.models."""
