"""Where odisr's shipped files are: the mode presets (``configs/``) and the manifests (``data/``).

In the repository both folders sit at the top (``configs/`` is the folder users read, copy and edit). The wheel
ships the same folders inside the package, as ``odisr/configs`` and ``odisr/data`` (``setup.py`` maps them; no file
is duplicated), read through :mod:`importlib.resources`. Running from a checkout (an editable install, or the
checkout on ``PYTHONPATH``) reads that checkout's folders, so what you edit is what runs.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = ["shipped_folder"]

_CHECKOUT = Path(__file__).resolve().parents[1]


def shipped_folder(name: str) -> Path:
    """The folder ``name`` (``"configs"`` or ``"data"``): the checkout's top-level one when odisr runs from a
    source tree (a ``pyproject.toml`` beside the package), else the copy installed inside the package.

    A wheel is always installed unpacked, so the result is a real directory either way.
    """
    if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / name).is_dir():
        return _CHECKOUT / name
    return Path(str(files("odisr").joinpath(name)))
