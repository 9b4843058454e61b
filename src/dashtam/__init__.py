"""Dashtam: a self-hostable async REST API that aggregates a person's financial data."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dashtam")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
