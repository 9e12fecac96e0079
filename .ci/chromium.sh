# Sourced by .ci/run: Debian's chromium for the workspace browser tests (Playwright drives it;
# `playwright install` would need the network). Installed only when missing.
if [ ! -x /usr/bin/chromium ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
echo "Chromium for the browser tests: $(/usr/bin/chromium --version 2>/dev/null | head -1)"
