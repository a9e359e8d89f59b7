#!/usr/bin/env bash
# System packages the test suite needs beyond `pip install -e ".[test,all]"` (run as root before `make test`).
# Headless Chromium for tests/apps/test_serve.py::test_page_in_headless_chromium, driven by Playwright's
# Python API with this executable (pip's `playwright` comes with the test extra; `playwright install`
# is NOT needed: the test launches /usr/bin/chromium).
set -euo pipefail
apt-get update
DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
