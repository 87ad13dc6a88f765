"""Textual's Footer, without the objects it keeps of every key it ever showed.

The Footer recomposes whenever the bindings change (every tab switch), and each
FooterKey it makes is data-bound to the Footer's `compact`: Textual keeps that
watcher, and with it the removed FooterKey, until `compact` changes, which
here it never does. ~2,700 objects per tab switch piled up (Textual 8.2.8) for
every collection of the cyclic GC to walk; forgotten here after each recompose.
"""

from __future__ import annotations

from textual.widgets import Footer as TextualFooter


class Footer(TextualFooter):
    async def recompose(self) -> None:
        await super().recompose()
        # textual.reactive._watch keeps {attribute: [(node, callback), ...]} under this name
        watchers = getattr(self, "__watchers", None)
        if isinstance(watchers, dict):
            for entries in watchers.values():
                entries[:] = [(node, callback) for node, callback in entries if getattr(node, "is_attached", True)]
