#!/usr/bin/env bash
# Install Debian's Chromium for the browser tests (Python Playwright drives /usr/bin/chromium).
# Never downloads browsers from elsewhere: no `playwright install`. Idempotent.
set -euo pipefail
exec bash "$(dirname "$0")/apt-install.sh" install-browser /usr/bin/chromium chromium fonts-dejavu-core
