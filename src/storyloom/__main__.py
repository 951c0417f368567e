"""`python -m storyloom` is the `storyloom` command."""

from storyloom.cli import app

app()
