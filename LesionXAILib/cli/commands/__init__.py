"""Subcommands of ``lesionxai``; every public module here is one subcommand (see cli/main.py)."""
