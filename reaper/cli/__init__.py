"""The ``reaper`` command: flags, modes, what a person at a terminal sees."""

from reaper.cli.command import main, main_entry

__all__ = ["main", "main_entry"]
