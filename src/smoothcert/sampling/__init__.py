"""smoothcert.sampling."""
