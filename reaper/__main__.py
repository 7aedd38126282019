"""The ``reaper`` console script, and ``python -m reaper``."""

from __future__ import annotations

import gc
import sys
from typing import NoReturn


def main_entry() -> NoReturn:
    """Load the command with collections held off, leave what loaded out of them, run it, exit with its code."""
    # Loading SQLAlchemy, pydantic and loguru makes about 95,000 objects that live as long as the process.
    # Frozen before collections resume, no collection walks them: neither the first one, which would take
    # them all at once (26-40 ms of every start), nor any later one, the one at exit included.
    collecting = gc.isenabled()
    gc.disable()
    from reaper.cli.command import main  # here, not above: loaded while collections are held off

    gc.freeze()
    if collecting:
        gc.enable()
    sys.exit(main())


if __name__ == "__main__":
    main_entry()
