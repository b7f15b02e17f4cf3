"""``python -m odisr``: the ``odisr`` command, also for launchers that take a module (``torchrun -m odisr train``)."""

from odisr.cli.main import app

app(prog_name="odisr")
