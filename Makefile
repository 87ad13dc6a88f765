# The two commands of the README, and a few more.
.PHONY: setup launch test bench screenshot

setup:            ## install everything (idempotent)
	./scripts/setup.sh

launch: setup     ## set up, then open the terminal UI on the local stack
	.venv/bin/laddr-sandbox launch

test:             ## set up everything the tests need, then run them all
	./scripts/test.sh

bench: setup      ## every benchmark against real brokers, printed as tables
	.venv/bin/python -m bench

screenshot: setup ## regenerate docs/screenshot.svg
	.venv/bin/python -m sandbox.tui.screenshot docs/screenshot.svg
