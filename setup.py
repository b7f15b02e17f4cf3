"""Package list for setuptools (everything else is in pyproject.toml).

``configs/`` (the mode presets) and ``data/`` (the sample manifest) stay at the top of the repository, where users
look for them, and ship inside the wheel as ``odisr/configs`` and ``odisr/data`` (``package-dir`` in pyproject.toml;
read through :mod:`odisr.resources`). setuptools' package finder cannot discover such mapped folders, hence this file.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["odisr*", "pipelines*"]), "odisr.configs", "odisr.data"])
