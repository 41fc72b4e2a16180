#!/usr/bin/env bash
# Measures requests per second and latency of plain HTTP and intercepted
# HTTPS through webwarden and through mitmproxy running a regex-scanning
# addon (mitm_regex_addon.py), against a direct baseline, all on loopback.
# Also records webwarden's resident memory after loading the list and after
# the runs.
#
# Usage: bench/load/run.sh [LIST]
#
# common.sh describes LIST, the settings, and how the script keeps to
# loopback and stops what it started. WEBWARDEN_BENCH_VENV is the
# virtualenv with mitmproxy (default: ~/.cache/webwarden-bench-venv).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"
venv="${WEBWARDEN_BENCH_VENV:-$HOME/.cache/webwarden-bench-venv}"

build_release

if [ ! -x "$venv/bin/mitmdump" ]; then
    echo "== installing mitmproxy into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet mitmproxy
fi

echo "== machine"
{
    describe_machine
    echo "mitmproxy: $("$venv/bin/mitmdump" --version | awk '/^Mitmproxy:/ { print $2 }')"
    echo "python: $("$venv/bin/python" --version)"
} | tee "$out/machine.txt"

start_origin
start_webwarden webwarden --events-file "$work/events.jsonl"

echo "== starting mitmproxy"
mitm_port="$(free_port)"
"$venv/bin/mitmdump" --listen-host 127.0.0.1 --listen-port "$mitm_port" \
    --set confdir="$work/mitmproxy" \
    --set ssl_verify_upstream_trusted_ca="$work/origin-ca.pem" \
    --set flow_detail=0 \
    -s "$here/mitm_regex_addon.py" \
    --set regex_list="$list" --set regex_list_format="$format" \
    >"$out/mitmproxy.log" 2>&1 &
mitm_pid=$!
pids+=("$mitm_pid")
wait_for_log "$out/mitmproxy.log" "proxy listening at" "$mitm_pid" 300 mitmproxy "$out/mitmproxy.log"
wait_for_file "$work/mitmproxy/mitmproxy-ca-cert.pem" "$mitm_pid" 30 mitmproxy "$out/mitmproxy.log"
grep "regex filter" "$out/mitmproxy.log" | tee -a "$out/machine.txt"

# Runs one measurement: PATH (direct, webwarden or mitmproxy), SCHEME,
# CONNECTIONS.
measure() {
    local path="$1" scheme="$2" connections="$3"
    case "$path" in
        direct) measure_path direct "$scheme" "$connections" "$work/origin-ca.pem" ;;
        webwarden)
            measure_path webwarden "$scheme" "$connections" "$work/webwarden/ca.pem" \
                "$webwarden_pid" "$webwarden_addr"
            ;;
        mitmproxy)
            measure_path mitmproxy "$scheme" "$connections" "$work/mitmproxy/mitmproxy-ca-cert.pem" \
                "$mitm_pid" "127.0.0.1:$mitm_port"
            ;;
    esac
}

# Rounds go over every run in turn, so a slow spell of the machine touches
# all three paths instead of one.
for round in $(seq 1 "$rounds"); do
    echo "== measuring, round $round of $rounds"
    for scheme in http https; do
        for connections in $connection_counts; do
            for path in direct webwarden mitmproxy; do
                measure "$path" "$scheme" "$connections"
            done
        done
    done
done

echo "load average after: $(cut -d ' ' -f 1-3 /proc/loadavg)" | tee -a "$out/machine.txt"
rss_after="$(vm_rss_kib "$webwarden_pid")"
echo "webwarden VmRSS after the runs: $rss_after KiB" | tee -a "$out/machine.txt"
echo "webwarden events written: $(wc -l <"$work/events.jsonl")" | tee -a "$out/machine.txt"

echo "== summary"
"$bin/webwarden-load" summary --results "$out/results.jsonl" \
    --rss-loaded-kib "$rss_loaded" --rss-after-kib "$rss_after" | tee "$out/summary.md"
echo "results in $out"
