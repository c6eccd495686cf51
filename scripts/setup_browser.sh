#!/usr/bin/env bash
# Provides /usr/bin/chromium for scripts/check_site.py: installs Debian's chromium package when it is missing and
# we are root. When that is impossible, check_site.py skips the browser check with a message (a failure under CI).
set -uo pipefail
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup_browser: installing Debian's chromium for the site check (apt-get; a few minutes)..."
    log="$(mktemp)"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >"$log" 2>&1; then
        echo "setup_browser: apt-get install chromium failed:"; tail -n 5 "$log"
    fi
    rm -f "$log"
else
    echo "setup_browser: /usr/bin/chromium is missing and cannot be installed here (not root, or no apt-get)"
fi
exit 0
