"""Textual's Footer, remade only when the keys it shows change, and without the objects it kept.

The Footer recomposes whenever the bindings may have changed: several times per
tab switch (focus moves, the tab activates), each time making a FooterKey per
key with its styles. Those are cyclic garbage once replaced, and a tab switch
left ~9,000 such objects for the next full collection (one of 0.8 s now and
then under a flood, bench/README.md). Here it recomposes only when what it
would show differs from what it shows.

Each FooterKey it makes is also data-bound to the Footer's `compact`: Textual
keeps that watcher, and with it the removed FooterKey, until `compact` changes,
which here it never does (~2,700 objects per tab switch piled up, Textual
8.2.8); forgotten after each recompose.
"""

from __future__ import annotations

from collections.abc import Hashable

from textual.widgets import Footer as TextualFooter


class Footer(TextualFooter):
    _shown: Hashable = None

    def _what_it_shows(self) -> Hashable:
        """What compose() would make now (Footer.compose reads the same)."""
        if not self._bindings_ready or not self.is_attached:
            return None
        keys = tuple((binding.key, binding.action, binding.description, binding.key_display, binding.group,
                      enabled, tooltip)
                     for (_, binding, enabled, tooltip) in self.screen.active_bindings.values() if binding.show)
        return keys, self.compact, self.show_command_palette

    async def recompose(self) -> None:
        shown = self._what_it_shows()
        if shown is not None and shown == self._shown:
            return
        self._shown = shown
        await super().recompose()
        # textual.reactive._watch keeps {attribute: [(node, callback), ...]} under this name
        watchers = getattr(self, "__watchers", None)
        if isinstance(watchers, dict):
            for entries in watchers.values():
                entries[:] = [(node, callback) for node, callback in entries if getattr(node, "is_attached", True)]
