"""reaper: keeps a background-job table (processing_tasks) free of zombies and expired rows."""

__version__ = "0.1.0"
