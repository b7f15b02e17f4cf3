"""Command-line interface (``odisr``)."""
