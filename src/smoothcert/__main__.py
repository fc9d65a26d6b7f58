"""``python -m smoothcert``: the same as the ``smoothcert`` command."""

from smoothcert.cli import app

if __name__ == "__main__":  # pragma: no cover
    app(prog_name="smoothcert")
