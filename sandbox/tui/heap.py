"""The cyclic garbage collector, tamed for an app that ingests a flood.

A full collection walks every tracked object: Textual's widgets, styles and
caches (hundreds of thousands after start-up) and whatever the views keep. Under
a 20,000 msg/s flood that was a pause of up to a quarter of a second, every few
seconds, with keys waiting. After start-up the app's own objects are frozen
(never walked again), and collections run less often: kept items are compact
(message_rows.py), so little that is new survives, and less is garbage in cycles.
"""

from __future__ import annotations

import gc

# gen0: allocations before a young collection (default 700); gen1, gen2: collections of the
# younger generation before the older one is looked at (defaults 10, 10).
# Measured under a 20,000 msg/s + 20,000 lines/s flood (bench/tui_child.py): (20000, 20, 50) made
# gen-1 collections of 100+ ms; the defaults a full one about every second; this keeps each under ~20 ms.
THRESHOLDS = (5_000, 5, 100)


def settle() -> None:
    """Call once the first screen is up: collect, freeze what survived, collect less often from now on."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
