"""Process settings for long-running Runyard processes (API nodes, workers)."""

from __future__ import annotations

import gc

__all__ = ["tune_gc"]

# Runs allocate many short-lived objects (pydantic-ai nodes, SQL rows, event dicts) and few
# cycles: a higher young-generation threshold trades a little memory for far fewer passes.
THRESHOLDS = (20_000, 20, 20)


def tune_gc() -> None:
    """Freeze the startup heap (imports, app, engine) out of the collector, and raise thresholds.

    Without this, every full pass walks the hundreds of thousands of objects imported at
    startup, which never die; frozen, they are no longer scanned.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
