"""`python -m dashtam` runs the command line."""

from dashtam.cli import app

app()
