#!/usr/bin/env bash
# Installs Debian's Chromium for the report's browser test when it is
# missing (root and apt-get needed). Where it cannot be installed the test
# skips with a notice, and fails under CI=true.
set -uo pipefail
for c in "${CHROMIUM:-}" chromium chromium-browser google-chrome; do
    if [ -n "$c" ] && command -v "$c" >/dev/null 2>&1; then
        exit 0
    fi
done
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium.sh: Chromium is missing and cannot be installed here (needs root and apt-get);" \
        "the report's browser test will skip (and fail under CI=true)" >&2
    exit 0
fi
echo "chromium.sh: installing Debian's chromium for the report's browser test" >&2
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
install || { apt-get update -qq && install; } || {
    echo "chromium.sh: apt-get could not install chromium; the browser test will skip (fail under CI=true)" >&2
}
exit 0
