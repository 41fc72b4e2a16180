#!/usr/bin/env bash
# Installs a webwarden .deb on this machine, checks it as an administrator
# and an employee would, removes and purges it, and checks that nothing
# trusted is left. Changes the real system: run it as root on a test
# machine or in CI. A temporary user `wwcheck` plays the employee.
#
# Usage: installers/linux/check-deb.sh PACKAGE.deb
# Needs: dpkg, lintian, openssl, curl, certutil (libnss3-tools), sudo.
set -euo pipefail

package="$(realpath "$1")"
user=wwcheck
home="/home/$user"
data="$home/.local/share/webwarden"
work="$(mktemp -d)"
chmod 0755 "$work"
agent_pid=""

step() { echo "== $*"; }
fail() { echo "FAILED: $*" >&2; exit 1; }
as_user() { runuser -u "$user" -- env -i HOME="$home" PATH=/usr/bin:/bin "$@"; }

cleanup() {
    if [ -n "$agent_pid" ]; then kill "$agent_pid" 2>/dev/null || true; fi
    dpkg -P webwarden >/dev/null 2>&1 || true
    userdel -r "$user" >/dev/null 2>&1 || true
    rm -rf "$work"
}
[ "$(id -u)" = 0 ] || fail "run as root: this installs a package"
if dpkg -s webwarden >/dev/null 2>&1; then
    fail "webwarden is already installed; remove it first (dpkg -P webwarden)"
fi
if id "$user" >/dev/null 2>&1; then
    fail "the user $user exists; this check creates and deletes it, so remove it first"
fi
# Set only now, so the checks above never purge an existing installation.
trap cleanup EXIT

step "lintian"
lintian --fail-on error "$package"

step "install with dpkg -i"
dpkg -i "$package"
for file in /usr/bin/webwarden /usr/bin/webwarden-tray /etc/webwarden/policy.toml \
    /etc/xdg/autostart/webwarden-tray.desktop /etc/sudoers.d/webwarden \
    /usr/share/applications/webwarden-tray.desktop /usr/share/doc/webwarden/copyright; do
    [ -f "$file" ] || fail "$file is missing"
done
[ "$(stat -c %a /etc/sudoers.d/webwarden)" = 440 ] || fail "/etc/sudoers.d/webwarden is not mode 0440"
visudo -c -f /etc/sudoers.d/webwarden
grep -q '^Exec=webwarden-tray --hidden$' /etc/xdg/autostart/webwarden-tray.desktop \
    || fail "the login entry does not start the tray app hidden"

step "an administrator's policy"
printf 'blocked\\.test,Gambling\n' > "$work/list.csv"
chmod 0644 "$work/list.csv"
cat > /etc/webwarden/policy.toml <<EOF
contact = "Call the IT desk at 4242"
listen = "127.0.0.1:0"

[[lists]]
path = "$work/list.csv"

[[siem]]
kind = "file"
path = "$data/siem-events.jsonl"

[ca]
auto_trust = true

[tray]
allow_pause = false
allow_quit = false
EOF

step "the employee's agent trusts its own CA without admin rights"
useradd -m "$user"
as_user mkdir -p "$data"
as_user /usr/bin/webwarden run > "$work/agent.log" 2>&1 &
agent_pid=$!
for _ in $(seq 100); do
    if [ -f "$data/status.json" ] && grep -q '"trusted": true' "$data/status.json"; then break; fi
    kill -0 "$agent_pid" 2>/dev/null || { cat "$work/agent.log"; fail "the agent exited"; }
    sleep 0.3
done
grep -q '"trusted": true' "$data/status.json" || { cat "$work/agent.log" "$data/status.json"; fail "the CA is not trusted in every store"; }
openssl verify -CAfile /etc/ssl/certs/ca-certificates.crt "$data/ca.pem"
ls /var/lib/webwarden/trusted/uid-*.pem
listen="$(sed -n 's/.*"listen": "\(.*\)".*/\1/p' "$data/status.json")"
# curl trusts only the system bundle, so the block page over HTTPS shows
# that the system store accepts the employee's CA.
code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --noproxy '' \
    --proxy "http://$listen" --cacert /etc/ssl/certs/ca-certificates.crt https://blocked.test/)"
[ "$code" = 403 ] || fail "expected the block page (403) over HTTPS, got $code"

step "webwarden status shows the policy"
as_user /usr/bin/webwarden status > "$work/status.txt" || true
cat "$work/status.txt"
for expected in "policy /etc/webwarden/policy.toml" "lists: $work/list.csv" \
    "SIEM: file $data/siem-events.jsonl" "block page contact: Call the IT desk at 4242" \
    "pause allowed: no, quit allowed: no"; do
    grep -qF "$expected" "$work/status.txt" || fail "status does not show: $expected"
done

step "remove"
kill -TERM "$agent_pid"
wait "$agent_pid" || true
agent_pid=""
cert="$(cat "$data/ca.pem")"
printf '%s\n' "$cert" > "$work/ca.pem"
dpkg -r webwarden
for file in /usr/bin/webwarden /usr/bin/webwarden-tray /etc/sudoers.d/webwarden \
    /usr/share/applications/webwarden-tray.desktop; do
    [ ! -e "$file" ] || fail "$file is still there after removal"
done
if openssl verify -CAfile /etc/ssl/certs/ca-certificates.crt "$work/ca.pem" >/dev/null 2>&1; then
    fail "the system bundle still trusts the employee's CA"
fi
if ls /usr/local/share/ca-certificates/webwarden-* >/dev/null 2>&1; then
    fail "a webwarden certificate is left in /usr/local/share/ca-certificates"
fi
if as_user certutil -L -d "sql:$home/.pki/nssdb" 2>/dev/null | grep -q webwarden; then
    fail "Chromium's NSS database still holds a webwarden certificate"
fi

step "purge"
dpkg -P webwarden
[ ! -e /etc/webwarden ] || fail "/etc/webwarden is still there after purge"
[ ! -e /var/lib/webwarden ] || fail "/var/lib/webwarden is still there after purge"
[ ! -e "$data" ] || fail "$data (the employee's data and spool) is still there after purge"

echo "the package installs, works, removes and purges cleanly"
