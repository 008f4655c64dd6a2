"""The one build setting pyproject.toml cannot hold: the top-level ``migrations/`` ships as ``campaigns.migrations``.

``[tool.setuptools.packages.find]`` only finds a package in a folder of its own name, and a package mapped from
another folder (``package_dir``) must be named in the package list, so the list is computed here. With the
mapping, the editable install (``make venv``) and the wheel both import ``campaigns.migrations`` from that one
folder, and ``campaigns migrate`` finds it from any directory. Every other setting is in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

# Namespace packages, as pyproject's `find` had: data folders such as campaigns/rulesets/ are packages too.
OWN = find_namespace_packages(include=["campaigns", "campaigns.*", "worker", "worker.*"])
MIGRATIONS = ["campaigns.migrations", *(f"campaigns.migrations.{p}" for p in find_namespace_packages("migrations"))]

setup(
    packages=[*OWN, *MIGRATIONS],
    package_dir={"campaigns.migrations": "migrations"},
)
