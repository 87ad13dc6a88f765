"""Keyboard focus and what the help, the footer and the palette list (issue 12 §3), on the real app."""

from __future__ import annotations

from textual.widgets import Input, TabbedContent, TextArea

from sandbox.protocol import Response
from sandbox.runtime.base import ServiceStatus
from sandbox.switch import WaitingTasks
from sandbox.tui.demo_data import messages, populate
from sandbox.tui.help_screen import HelpScreen
from sandbox.tui.logs_view import LogsView
from sandbox.tui.message_detail import MessageDetail
from sandbox.tui.message_rows import row_of
from sandbox.tui.messages_view import MessagesView
from sandbox.tui.quit_dialog import QuitDialog
from sandbox.tui.send_panel import SendPanel
from sandbox.tui.services_panel import ServicesPanel
from sandbox.tui.switch_dialog import SwitchDialog
from sandbox.tui.task_history import SentTask, TaskHistory


def footer_keys(app) -> set[str]:
    return {key for key, b in app.screen.active_bindings.items() if b.binding.show}  # what the footer shows


async def test_tab_leaves_the_editor_and_ctrl_t_indents(offline_app):
    async with offline_app.run_test(size=(120, 40)) as pilot:
        editor = offline_app.main.query_one("#send-inputs", TextArea)
        editor.text = "{}"
        editor.focus()
        await pilot.pause()
        editor.move_cursor((0, 1))
        await pilot.press("ctrl+t")
        assert editor.text == "{   }", editor.text  # indented to the next stop (4)
        indented = editor.text
        await pilot.press("tab")
        assert offline_app.focused is not editor and editor.text == indented  # tab moved on, typed nothing
        editor.focus()
        await pilot.press("shift+tab")
        assert offline_app.focused is not editor and editor.text == indented
        editor.focus()
        await pilot.pause()
        assert {"ctrl+t", "f7", "ctrl+s"} <= footer_keys(offline_app)  # indent and select-all are listed
        await pilot.press("f7")
        assert editor.selected_text == indented


async def test_escape_leaves_every_input_and_then_keys_work(offline_app):
    async with offline_app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2", "slash", *"error")
        logs = offline_app.main.query_one(LogsView)
        assert offline_app.focused is logs.filter_input and logs.filter_input.value == "error"
        await pilot.press("escape", "p")  # leaves the filter; p pauses instead of being typed
        assert logs.filter_input.value == "error" and logs.live.paused and offline_app.focused is logs.live

        await pilot.press("3")
        box = offline_app.main.query_one("#tap-last", Input)
        box.focus()
        await pilot.press("end", "backspace", "5")  # this box asked for digits
        assert box.value == "105"
        await pilot.press("escape", "4")  # out of the box, 4 opens Queues instead of typing
        assert box.value == "105" and offline_app.main.query_one(TabbedContent).active == "queues-tab"

        await pilot.press("1")
        editor = offline_app.main.query_one("#send-inputs", TextArea)
        assert offline_app.focused is editor
        await pilot.press("escape")
        assert offline_app.focused is offline_app.main.query_one(TaskHistory)
        await pilot.press("2")  # a tab digit, now that no editor has the focus
        assert offline_app.main.query_one(TabbedContent).active == "logs-tab"


async def test_enter_on_messages_opens_the_newest_with_nothing_chosen(offline_app):
    async with offline_app.run_test(size=(120, 40)) as pilot:
        tap = offline_app.main.query_one(MessagesView)
        await pilot.press("3")
        sample = messages(30)
        tap.add_messages(sample)
        tap.flush()
        await pilot.pause()
        assert tap.live.selected is None and "enter" in footer_keys(offline_app)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(offline_app.screen, MessageDetail) and offline_app.screen.message == row_of(sample[-1])


async def test_help_footer_and_palette_list_the_keys_that_work(offline_app):
    async with offline_app.run_test(size=(120, 40)) as pilot:
        populate(offline_app)
        await pilot.press("f1")
        await pilot.pause()
        table = offline_app.screen.key_table()
        rows = list(zip(table.columns[0]._cells, table.columns[1]._cells, table.columns[2]._cells, strict=True))
        wheres = [w for w, _, _ in rows if w]
        assert {"Switch dialog", "Quit dialog"} <= set(wheres)
        keys = [k for _, k, _ in rows]
        for key in ("⏎", "f7", "^t", "esc", "m", "f", "l", "d"):
            assert key in keys, (key, keys)
        await pilot.press("escape")
        assert not isinstance(offline_app.screen, HelpScreen)

        await offline_app.push_screen(QuitDialog("kafka", "local"))
        await pilot.pause()
        assert {"l", "d", "escape"} <= footer_keys(offline_app)
        await pilot.press("escape")
        dialog = SwitchDialog("kafka", "redis")
        await offline_app.push_screen(dialog)
        await pilot.pause()
        assert {"m", "f", "escape"} <= footer_keys(offline_app)
        await pilot.press("escape")

        titles = [c.title for c in offline_app.get_system_commands(offline_app.screen)]
        from sandbox.tui.commands import ACTIONS

        assert [*titles, *(a[0] for a in ACTIONS)].count("Quit") == 1


async def test_the_switch_dialog_tells_in_progress_from_queued(offline_app):
    async with offline_app.run_test(size=(120, 40)) as pilot:
        dialog = SwitchDialog("redis", "kafka")
        await offline_app.push_screen(dialog)
        dialog.show_pending(WaitingTasks(in_progress={"researcher": 2}, queued={"writer": 3}))
        await pilot.pause()
        text = str(dialog.query_one("#switch-pending").render())
        assert "2 in progress (researcher 2): held by live workers, they finish" in text
        assert "3 queued or held by a dead worker (writer 3)" in text
        assert str(dialog.query_one("#migrate").label) == "Migrate 3"


async def test_notes_from_laddr_projects_show(offline_app):
    async with offline_app.run_test(size=(120, 40)) as pilot:
        panel = offline_app.main.query_one(ServicesPanel)
        note = "Laddr worker; NoOp LLM (gemini needs GEMINI_API_KEY)"
        panel.update_services([ServiceStatus("researcher_worker", "worker", 1, note=note)])
        await pilot.pause()
        assert str(panel.get_cell("researcher_worker", "note")) == note

        send = offline_app.main.query_one(SendPanel)
        task = SentTask(number=1, agent="researcher", payload={}, task_id="t-1", state="success",
                        response=Response(task_id="t-1", status="success", result={}, matched_by="job_id"))
        send.add_sent(task)
        send.finish(task)
        await pilot.pause()
        shown = str(send.query_one("#response-note").render())
        assert "matched by its job_id only" in shown and send.query_one("#response-note").display

        tap = offline_app.main.query_one(MessagesView)
        answer = next(m for m in messages(20) if m.kind == "response")
        answer.task_id = None
        assert "unmatched" in tap.render_message(answer).plain


async def test_the_footer_forgets_the_keys_it_showed_before(offline_app):
    """Each tab switch recomposes the footer; what it showed before must not pile up (Textual keeps it)."""
    from sandbox.tui.footer import Footer

    async with offline_app.run_test(size=(120, 40)) as pilot:
        footer = offline_app.main.query_one(Footer)
        for _ in range(10):
            for key in ("2", "3", "4"):
                await pilot.press(key)
                await pilot.pause()
        watching = getattr(footer, "__watchers", {}).get("compact", [])
        assert watching and all(node.is_attached for node, _ in watching)
        assert len(watching) <= len(footer.children)  # one per key shown (the palette key is not bound)


async def test_the_footer_is_remade_only_when_its_keys_change(offline_app):
    """Textual asks the footer to recompose whenever bindings may have changed (several times per tab
    switch); remaking the same keys only made garbage for the next full collection to walk."""
    from sandbox.tui.footer import Footer

    async with offline_app.run_test(size=(120, 40)) as pilot:
        await pilot.press("3")
        await pilot.pause()
        footer = offline_app.main.query_one(Footer)
        shown = list(footer.children)
        assert shown, "the footer shows no keys"
        footer.bindings_changed(footer.screen)  # what Textual calls when bindings may have changed
        await pilot.pause(0.2)
        assert list(footer.children) == shown and all(key.is_attached for key in shown)
        await pilot.press("2")  # Logs: other keys
        await pilot.pause(0.2)
        assert list(footer.children) != shown and not any(key.is_attached for key in shown)
