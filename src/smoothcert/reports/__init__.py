"""smoothcert.reports."""
