"""`python -m meshd` and the `meshd` console script.

The cyclic garbage collector is off while the interpreter imports meshd and its libraries: every object
made then lives for the whole run, and the collections that allocation counts trigger during the imports
(about a tenth of the start-up's CPU) would scan them in vain. `meshd.cli.main` turns it back on for
every command but `meshd run`, whose agent does after its first pass (`meshd.agent.gcfreeze`)."""

import gc

gc.disable()

from meshd.cli.main import main  # noqa: E402

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
