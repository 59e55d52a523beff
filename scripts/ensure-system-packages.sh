#!/usr/bin/env sh
# Install the Debian packages the tests drive as real peers, when missing:
# Varnish with the xkey vmod (CDN purge tests), Chromium (a browser's fetch),
# curl (a plain client), wrk (the gateway benchmark's load tool) and
# docker-compose (validates docker-compose.yml).
set -eu
missing=""
command -v varnishd >/dev/null 2>&1 || missing="$missing varnish"
[ -e /usr/lib/x86_64-linux-gnu/varnish/vmods/libvmod_xkey.so ] \
  || ls /usr/lib/*/varnish/vmods/libvmod_xkey.so >/dev/null 2>&1 \
  || missing="$missing varnish-modules"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
# Prometheus (promtool checks the rules and scrapes in tests) and Alertmanager (amtool).
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing="$missing prometheus"
command -v amtool >/dev/null 2>&1 || missing="$missing prometheus-alertmanager"
# docker-compose 1.29 validates docker-compose.yml (no engine needed).
command -v docker-compose >/dev/null 2>&1 || missing="$missing docker-compose"
[ -z "$missing" ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
else
  SUDO=""
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages:$missing (install them with your package manager)" >&2
  exit 1
fi
echo "installing system packages:$missing" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2 \
  || { $SUDO apt-get update -q >&2 && \
       $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2; }
