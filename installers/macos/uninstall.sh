#!/bin/sh
# NOTE: untested: macOS tools (security, launchctl) cannot run on the Linux machines webwarden is built on.
# Removes webwarden from a Mac, as root: stops the tray apps (which restore
# the proxy settings they changed), removes every webwarden root CA from
# the System keychain, and deletes the files the .pkg installed. With
# --purge it also deletes each user's webwarden data.
set -e
rm -f /etc/sudoers.d/webwarden
for uid in $(ps -axo uid=,comm= | awk '/webwarden-tray$/ {print $1}' | sort -u); do
    launchctl bootout "gui/$uid" /Library/LaunchAgents/org.webwarden.tray.plist 2>/dev/null || true
done
pkill -TERM -x webwarden-tray 2>/dev/null || true
sleep 3

security find-certificate -a -c webwarden -Z /Library/Keychains/System.keychain 2>/dev/null \
    | awk '/^SHA-1 hash:/ {print $3}' | while read -r hash; do
    security delete-certificate -Z "$hash" /Library/Keychains/System.keychain
done

rm -rf /Applications/webwarden.app /usr/local/bin/webwarden \
    /Library/LaunchAgents/org.webwarden.tray.plist
pkgutil --forget org.webwarden.tray >/dev/null 2>&1 || true
if [ "${1:-}" = --purge ]; then
    rm -rf "/Library/Application Support/webwarden"
    for home in /Users/*; do
        owner="$(stat -f %Su "$home")"
        sudo -u "$owner" rm -rf "$home/Library/Application Support/webwarden"
    done
fi
