"""Allows ``python -m reaper``."""

from reaper.cli import main_entry

main_entry()
