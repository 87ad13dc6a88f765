"""Every action in the command palette (ctrl+p), for people who would rather type than remember keys."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.css.query import NoMatches
from textual.widget import Widget

from sandbox.tui.logs_view import LogsView
from sandbox.tui.messages_view import MessagesView
from sandbox.tui.dead_letters_view import DeadLettersView
from sandbox.tui.queues_view import QueuesView
from sandbox.tui.send_panel import SendPanel
from sandbox.tui.services_panel import ServicesPanel

# (title, help, widget that runs it (None: the screen), action)
ACTIONS: list[tuple[str, str, type[Widget] | None, str]] = [
    ("Start the stack", "Bring the stack up, or attach to the one running", None, "start_stack"),
    ("Start on the other runtime (Compose ⇄ local)", "After a failed start: run the stack the other way", None, "other_runtime"),
    ("Switch backend (Redis ⇄ Kafka)", "Move the stack to the other broker, with its waiting tasks", None, "switch_backend"),
    ("Show Send", "Send a task to an agent", None, "show_tab('send')"),
    ("Show Logs", "Follow a service's logs", None, "show_tab('logs')"),
    ("Show Messages", "Live tap of the broker", None, "show_tab('messages')"),
    ("Show Queues", "Partitions, consumers, lag", None, "show_tab('queues')"),
    ("Scale service up", "Add a replica to the selected service", ServicesPanel, "scale(1)"),
    ("Scale service down", "Remove a replica from the selected service", ServicesPanel, "scale(-1)"),
    ("Restart service", "Restart every replica of the selected service", ServicesPanel, "restart"),
    ("Follow service logs", "Show the selected service's logs", ServicesPanel, "logs"),
    ("Kill -9 a replica", "SIGKILL one replica of the selected service, to watch redelivery", ServicesPanel, "kill"),
    ("Send task", "Send the inputs to the chosen agent", SendPanel, "send"),
    ("Use preset inputs", 'Put {"query": "test"} in the editor', SendPanel, "preset"),
    ("Pause/resume logs", "Freeze the log view; lines keep arriving", LogsView, "pause"),
    ("Clear logs", "Empty the log view", LogsView, "clear"),
    ("Filter logs", "Show only lines containing some text", LogsView, "focus_filter"),
    ("Pause/resume messages", "Freeze the message view; messages keep arriving", MessagesView, "pause"),
    ("Replay last N messages", "Tap again from N messages back", MessagesView, "replay"),
    ("Clear messages", "Empty the message view", MessagesView, "clear"),
    ("Filter messages", "Show only messages containing some text", MessagesView, "focus_filter"),
    ("Refresh queues", "Read queue depth and partition owners now", QueuesView, "refresh"),
    ("Help: keys", "The key table", None, "app.help"),
    ("Quit", "Leave the stack running or take it down", None, "app.quit"),
]

ACTIONS += [
    ("Show Dead letters", "What could not be handled: requeue or drop", None, "show_tab('dlq')"),
    ("Trace the selected task", "Its sub-tasks, deliveries, log lines and answers", None, "trace"),
    ("Requeue dead letter", "Send the selected dead letter back to its queue", DeadLettersView, "requeue"),
    ("Requeue all dead letters", "Send every dead letter back to its queue", DeadLettersView, "requeue_all"),
    ("Drop dead letter", "Remove the selected dead letter for good (asks first)", DeadLettersView, "drop"),
]


class SandboxCommands(Provider):
    """The sandbox's own actions, next to Textual's (themes, screenshot, keys)."""

    async def _run(self, target: type[Widget] | None, action: str) -> None:
        try:
            node = self.screen if target is None else self.screen.query_one(target)
        except NoMatches:
            self.app.notify("Not available here", severity="warning", timeout=3)
            return
        await node.run_action(action)

    async def discover(self) -> Hits:
        for title, help_text, target, action in ACTIONS:
            yield DiscoveryHit(title, partial(self._run, target, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, target, action in ACTIONS:
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self._run, target, action), help=help_text)
