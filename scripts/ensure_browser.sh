#!/usr/bin/env bash
# The web UI test drives LLaMA-Factory's web UI in a real headless Chromium (Debian's package).
# Installs it when missing and this user may; otherwise that test says why it is skipped.
set -u
if command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the web UI test..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
    || echo "Could not install chromium: the web UI test will be skipped."
else
  echo "No chromium found and cannot install it here: the web UI test will be skipped."
fi
exit 0
