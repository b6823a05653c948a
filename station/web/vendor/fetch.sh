#!/usr/bin/env bash
# Vendor the MQTT.js browser bundle (npm package `mqtt`, MIT) into station/web/vendor/.
#
#   bash station/web/vendor/fetch.sh            # fetch, check, install mqtt.min.js + licence
#   bash station/web/vendor/fetch.sh --check    # only check that the committed file is the pinned one
#
# The station page loads vendor/mqtt.min.js with a plain <script> tag: no build step and no
# network at run time. This script is run by a developer when the pinned version changes
# (edit VERSION and the two sha256 sums below, and say why in the commit); CI does not run it.
# It needs npm and the npm registry. The tarball's sha256 and the bundle's sha256 are checked,
# so a re-run reproduces the committed file byte for byte or fails.
set -euo pipefail
cd "$(dirname "$0")"

VERSION=5.16.0
TARBALL_SHA256=c7d13d6dedf4c15063fb61d645c82d07d2a24f79b15736f313e96e116177950f
BUNDLE_SHA256=f3cbeae580d3010048938ee370f2db0c15d16e6f7fc147cb32ae5510e571b387

check() {
  echo "$BUNDLE_SHA256  mqtt.min.js" | sha256sum -c --quiet -
}

if [ "${1:-}" = "--check" ]; then
  check && echo "mqtt.min.js is mqtt@$VERSION"
  exit
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "mqtt@$VERSION" >/dev/null)
echo "$TARBALL_SHA256  $tmp/mqtt-$VERSION.tgz" | sha256sum -c --quiet -
tar -xzf "$tmp/mqtt-$VERSION.tgz" -C "$tmp" package/dist/mqtt.min.js package/LICENSE.md
cp "$tmp/package/dist/mqtt.min.js" mqtt.min.js
cp "$tmp/package/LICENSE.md" LICENSE.mqtt.md
check
echo "$VERSION" > mqtt.VERSION
echo "vendored mqtt@$VERSION: $(pwd)/mqtt.min.js ($(wc -c < mqtt.min.js) bytes), LICENSE.mqtt.md"
