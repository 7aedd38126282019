"""The ``reaper`` command: flags, modes, what a person at a terminal sees."""

import gc

# Loading the command's modules (SQLAlchemy, pydantic, loguru) makes some hundreds of thousands of
# objects, and the collector walked them all again and again as they came: about a fifth of a short
# run's time went to collections. It is held off while they load, and given back as it was.
_collecting = gc.isenabled()
gc.disable()
try:
    from reaper.cli.command import main
finally:
    if _collecting:
        gc.enable()

__all__ = ["main"]
