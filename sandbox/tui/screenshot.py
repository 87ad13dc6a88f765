"""Render the app with fixed data to an SVG (for the README): python -m sandbox.tui.screenshot out.svg"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from sandbox.config import Settings
from sandbox.tui.app import SandboxApp
from sandbox.tui.demo_data import populate
from sandbox.tui.main_screen import TABS


async def render(path: Path, size: tuple[int, int] = (120, 40), tab: str = "messages", backend: str = "kafka") -> Path:
    """Start the app headless at `size`, feed it fixed data, show `tab`, save an SVG."""
    app = SandboxApp(None, Settings(queue_backend=backend))
    async with app.run_test(size=size) as pilot:
        populate(app, backend)
        app.main.action_show_tab(tab)
        await pilot.pause(0.3)
        app.save_screenshot(filename=path.name, path=str(path.parent or Path(".")))
    return path


async def render_trace(path: Path, size: tuple[int, int] = (172, 34)) -> Path:
    """The trace screen of a coordinator's task (fixed data), as an SVG."""
    from sandbox.tui.demo_data import trace
    from sandbox.tui.trace_screen import TraceScreen

    app = SandboxApp(None, Settings(queue_backend="kafka"))
    async with app.run_test(size=size) as pilot:
        populate(app, "kafka")
        demo = trace()
        await app.push_screen(TraceScreen(demo.task_id, demo))
        await pilot.pause(0.3)
        app.save_screenshot(filename=path.name, path=str(path.parent or Path(".")))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, nargs="?", default=Path("laddr-sandbox.svg"))
    parser.add_argument("--size", default="120x40", help="WIDTHxHEIGHT (default 120x40)")
    parser.add_argument("--tab", choices=(*TABS, "trace"), default="messages", help="a tab, or a trace screen")
    parser.add_argument("--backend", choices=("redis", "kafka"), default="kafka")
    args = parser.parse_args(argv)
    width, height = (int(n) for n in args.size.lower().split("x"))
    if args.tab == "trace":
        out = asyncio.run(render_trace(args.out.resolve(), (width, height)))
    else:
        out = asyncio.run(render(args.out.resolve(), (width, height), args.tab, args.backend))
    print(out)


if __name__ == "__main__":
    main()
