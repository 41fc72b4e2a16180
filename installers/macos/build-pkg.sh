#!/usr/bin/env bash
# NOTE: untested: pkgbuild, productsign and the macOS Tauri bundler cannot run on the Linux machines webwarden is built on.
# Builds a signed webwarden .pkg: the app bundle (with the CLI inside),
# the policy file, the sudoers rule and the login agent. Prints the
# package path last.
#
# Usage: installers/macos/build-pkg.sh "Developer ID Installer: Example Corp (TEAMID)"
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
installer_identity="$1"
cd "$root"

cargo build --locked --release -p webwarden
npx --yes @tauri-apps/cli@2 build --config installers/macos/tauri.macos.conf.json >&2

version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
payload="$(mktemp -d)"
trap 'rm -rf "$payload"' EXIT
mkdir -p "$payload/Applications" "$payload/Library/LaunchAgents" \
    "$payload/Library/Application Support/webwarden"
cp -R target/release/bundle/macos/webwarden.app "$payload/Applications/"
cp "$here/org.webwarden.tray.plist" "$payload/Library/LaunchAgents/"
cp "$here/../linux/policy.toml" "$payload/Library/Application Support/webwarden/policy.toml.default"
cp "$here/../linux/sudoers" "$payload/Library/Application Support/webwarden/sudoers"
sed -i '' 's|/usr/bin/webwarden|/usr/local/bin/webwarden|' "$payload/Library/Application Support/webwarden/sudoers"

mkdir -p artifacts
unsigned="artifacts/webwarden-$version-unsigned.pkg"
package="artifacts/webwarden-$version.pkg"
pkgbuild --root "$payload" --scripts "$here/scripts" --identifier org.webwarden.tray \
    --version "$version" --install-location / "$unsigned" >&2
productsign --sign "$installer_identity" "$unsigned" "$package" >&2
rm -f "$unsigned"
echo "$package"
