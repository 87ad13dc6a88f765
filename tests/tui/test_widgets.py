"""The panels with fixed data: what they show and what their keys do, no stack needed."""

from __future__ import annotations

from textual.widgets import Button, DataTable, Label, Select, TabbedContent, TextArea

from sandbox.tui.demo_data import log_lines, messages, populate, queues, services
from sandbox.tui.help_screen import HelpScreen
from sandbox.tui.logs_view import LogsView
from sandbox.tui.message_detail import MessageDetail
from sandbox.tui.messages_view import MessagesView
from sandbox.tui.queues_view import QueuesView
from sandbox.tui.send_panel import PRESET, SendPanel, check_json
from sandbox.tui.services_panel import ServicesPanel
from sandbox.tui.task_history import TaskHistory


async def test_live_lines_are_bounded_filtered_and_pausable(offline_app):
    async with offline_app.run_test(size=(120, 40)) as pilot:
        tap = offline_app.main.query_one(MessagesView)
        offline_app.main.action_show_tab("messages")
        for _ in range(30):
            tap.add_messages(messages(1_000))
        tap.flush()
        live = tap.live
        assert live.kept == tap.keep and live.row_count == tap.max_rows
        assert live.received == 30 * 1_001

        tap.query_one("#tap-filter").value = "laddr.dlq"
        await pilot.pause()
        assert {m.channel for m in live.items()} == {"laddr.dlq"}
        tap.query_one("#tap-filter").value = ""
        await pilot.pause()

        await pilot.press("p")
        tap.add_messages(messages(5))
        tap.flush()
        assert live.paused and live.held == 6
        shown = live.row_count
        await pilot.press("p")
        assert not live.paused and live.row_count == min(tap.max_rows, shown + 6)

        await pilot.press("c")
        assert live.row_count == 0 and live.kept == 0


async def test_messages_follow_the_end_and_open_a_message(offline_app):
    async with offline_app.run_test(size=(120, 40)) as pilot:
        tap = offline_app.main.query_one(MessagesView)
        await pilot.press("3")
        tap.add_messages(messages(200))
        tap.flush()
        live = tap.live
        for _ in range(50):  # the scroll to the end lands on a later refresh; a busy machine is slow
            await pilot.pause(0.05)
            if live.max_scroll_y > 0 and live.scroll_y == live.max_scroll_y:
                break
        assert live.following and live.scroll_y == live.max_scroll_y > 0

        await pilot.press("up")  # selects the last line on screen, stops following
        assert not live.following and live.selected is not None
        chosen = live.selected
        tap.add_messages(messages(10))
        tap.flush()
        await pilot.pause()
        assert live.selected == chosen  # new messages do not move what you are reading

        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(offline_app.screen, MessageDetail)
        assert offline_app.screen.message == chosen
        await pilot.press("escape")
        await pilot.press("end")
        assert live.following and live.selected is None


async def test_topic_filter_lists_the_topics_seen(offline_app):
    async with offline_app.run_test(size=(120, 40)) as pilot:
        tap = offline_app.main.query_one(MessagesView)
        tap.add_messages(messages(20))
        tap.flush()
        await pilot.pause()
        select = tap.query_one("#tap-channel", Select)
        select.value = "laddr.responses"
        await pilot.pause()
        assert tap.live.items() and {m.channel for m in tap.live.items()} == {"laddr.responses"}


async def test_logs_filter_pause_and_bound(offline_app):
    async with offline_app.run_test(size=(120, 40)) as pilot:
        logs = offline_app.main.query_one(LogsView)
        await pilot.press("2")
        for _ in range(100):
            logs.add_log_lines(log_lines(100))
        logs.flush()
        assert logs.live.kept == logs.max_lines
        logs.query_one("#log-filter").value = "worker-2"
        await pilot.pause()
        assert logs.live.items() and all(line.replica.endswith("-2") for line in logs.live.items())
        await pilot.press("escape")
        logs.live.focus()
        await pilot.press("p")
        assert logs.live.paused and str(logs.query_one("#log-pause", Button).label) == "Resume"


async def test_send_validates_json_as_you_type(offline_app):
    async with offline_app.run_test(size=(120, 40)) as pilot:
        send = offline_app.main.query_one(SendPanel)
        editor = send.query_one("#send-inputs", TextArea)
        button = send.query_one("#send-button", Button)
        assert editor.text == PRESET and not button.disabled

        editor.text = '{"query": '
        await pilot.pause()
        assert button.disabled
        assert "invalid JSON" in str(send.query_one("#send-error", Label).render())

        editor.focus()
        await pilot.press("ctrl+r")  # preset
        await pilot.pause()
        assert editor.text == PRESET and not button.disabled


async def test_send_remembers_inputs_per_agent(offline_app, tmp_path):
    offline_app.inputs_file = tmp_path / "inputs.json"
    async with offline_app.run_test(size=(120, 40)) as pilot:
        send = offline_app.main.query_one(SendPanel)
        editor = send.query_one("#send-inputs", TextArea)
        agent = send.query_one("#send-agent", Select)
        editor.text = '{"topic": "kafka"}'
        agent.value = "writer"
        await pilot.pause()
        assert editor.text == PRESET
        agent.value = "researcher"
        await pilot.pause()
        assert editor.text == '{"topic": "kafka"}'

        send.action_send()  # no stack: recorded as an error, the app lives on
        await pilot.pause()
        history = send.query_one(TaskHistory)
        (task,) = history.tasks.values()
        assert task.state == "error" and "no stack" in (task.error or "")
        assert (tmp_path / "inputs.json").exists()


def test_check_json_says_where():
    assert check_json('{"a": 1}') == ({"a": 1}, None)
    value, error = check_json('{"a": }')
    assert value is None and error.startswith("line 1, column 7")


async def test_services_update_in_place_and_guard_actions(offline_app):
    async with offline_app.run_test(size=(120, 40)) as pilot:
        panel = offline_app.main.query_one(ServicesPanel)
        panel.update_services(services())
        panel.focus()
        await pilot.press("down", "down", "down")
        assert panel.selected_service == "researcher_worker"
        again = services()
        again[3].replicas.pop()
        panel.update_services(again)
        assert panel.selected_service == "researcher_worker"
        assert str(panel.get_cell("researcher_worker", "replicas")) == "2/3"

        await pilot.press("up", "up")  # api: not a worker
        await pilot.press("plus")
        assert any("only workers scale" in n.message for n in offline_app._notifications)

        await pilot.press("down", "down", "l")  # follow its logs
        await pilot.pause()
        assert offline_app.main.query_one(TabbedContent).active == "logs-tab"
        assert offline_app.main.query_one(LogsView).service == "researcher_worker"


async def test_queues_warn_about_idle_consumers(offline_app):
    async with offline_app.run_test(size=(120, 40)) as pilot:
        view = offline_app.main.query_one(QueuesView)
        view.update_queues(queues())
        await pilot.pause()
        banner = view.query_one("#idle-warning")
        assert banner.display and "analyzer_worker-3" in str(banner.render())
        table = view.query_one(DataTable)
        assert table.row_count == 5 + sum(len(s.consumers) for s in queues())
        healthy = [s for s in queues() if not s.idle_consumers]
        view.update_queues(healthy)
        await pilot.pause()
        assert not banner.display


async def test_help_lists_the_keys(offline_app):
    async with offline_app.run_test(size=(120, 40)) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(offline_app.screen, HelpScreen)
        table = offline_app.screen.key_table()
        keys = table.columns[1]._cells
        does = table.columns[2]._cells
        for key, what in [("b", "Switch the broker"), ("k", "kill -9"), ("R", "Replay last N")]:
            assert key in keys
            assert any(what in d for d in does)
        await pilot.press("escape")
        assert not isinstance(offline_app.screen, HelpScreen)


async def test_command_palette_runs_actions(offline_app):
    async with offline_app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"show queues")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await pilot.pause()
        assert offline_app.main.query_one(TabbedContent).active == "queues-tab"


async def test_quit_without_a_stack_just_exits(offline_app):
    async with offline_app.run_test(size=(80, 24)) as pilot:
        populate(offline_app)
        await pilot.press("q")
        await pilot.pause()
    assert offline_app.return_code == 0


async def test_screenshot_module_renders_fixed_data(tmp_path):
    from sandbox.tui.screenshot import render

    out = await render(tmp_path / "shot.svg", (120, 40), tab="queues")
    svg = out.read_text()
    assert svg.startswith("<svg") and "analyzer_worker-3" in svg
