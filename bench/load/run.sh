#!/usr/bin/env bash
# Measures requests per second and latency of plain HTTP and intercepted
# HTTPS through webwarden and through mitmproxy running a regex-scanning
# addon (mitm_regex_addon.py), against a direct baseline, all on loopback.
# Also records webwarden's resident memory after loading the list and after
# the runs.
#
# Usage: bench/load/run.sh [LIST]
#
# LIST, or WEBWARDEN_BENCH_LIST, is the list both proxies load. The default
# is the repository's blacklist.csv. These environment variables set the rest:
# - WEBWARDEN_BENCH_LIST_FORMAT: csv or domains (default: csv for *.csv, else domains).
# - WEBWARDEN_BENCH_DURATION: measured seconds per run (default: 10).
# - WEBWARDEN_BENCH_CONNECTIONS: connection counts to run (default: "1 64").
# - WEBWARDEN_BENCH_ROUNDS: rounds over all runs; the summary reports medians (default: 3).
# - WEBWARDEN_BENCH_OUT: results folder (default: ~/.cache/webwarden-bench-results/TIME).
# - WEBWARDEN_BENCH_VENV: virtualenv with mitmproxy (default: ~/.cache/webwarden-bench-venv).
# - CARGO_TARGET_DIR: cargo target folder (default: ~/.cache/webwarden-load-target).
#
# Every server listens on 127.0.0.1 and every request goes to loopback.
# Each run is bounded by time and by request count, and the origin exits by
# itself after 30 minutes. When the script exits, it stops every process it
# started by PID (unless the script itself is killed by SIGKILL).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

list="${1:-${WEBWARDEN_BENCH_LIST:-$root/blacklist.csv}}"
list="$(realpath "$list")"
if [ ! -r "$list" ]; then
    echo "error: list $list is not readable; pass a list file or set WEBWARDEN_BENCH_LIST" >&2
    exit 2
fi
case "${WEBWARDEN_BENCH_LIST_FORMAT:-}" in
    "") case "$list" in *.csv) format=csv ;; *) format=domains ;; esac ;;
    csv | domains) format="$WEBWARDEN_BENCH_LIST_FORMAT" ;;
    *)
        echo "error: invalid WEBWARDEN_BENCH_LIST_FORMAT ${WEBWARDEN_BENCH_LIST_FORMAT}; expected csv or domains" >&2
        exit 2
        ;;
esac
duration="${WEBWARDEN_BENCH_DURATION:-10}"
connection_counts="${WEBWARDEN_BENCH_CONNECTIONS:-1 64}"
rounds="${WEBWARDEN_BENCH_ROUNDS:-3}"
venv="${WEBWARDEN_BENCH_VENV:-$HOME/.cache/webwarden-bench-venv}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/webwarden-load-target}"
out="${WEBWARDEN_BENCH_OUT:-$HOME/.cache/webwarden-bench-results/$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$out"
if [ -e "$out/results.jsonl" ]; then
    echo "error: $out already contains results.jsonl; set WEBWARDEN_BENCH_OUT to a new folder" >&2
    exit 2
fi
work="$(mktemp -d "${TMPDIR:-/tmp}/webwarden-bench.XXXXXX")"

# PIDs of the processes this script started, stopped in reverse order.
pids=()

stop_all() {
    local index pid
    for ((index = ${#pids[@]} - 1; index >= 0; index--)); do
        pid="${pids[$index]}"
        kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "warning: PID $pid did not stop after SIGTERM; sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    pids=()
    rm -rf "$work"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

# Waits until FILE exists, failing when PID exits first or SECONDS pass.
wait_for_file() {
    local file="$1" pid="$2" seconds="$3" name="$4" log="$5"
    for _ in $(seq 1 $((seconds * 10))); do
        [ -s "$file" ] && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "error: $name exited before it was ready; last lines of $log:" >&2
            tail -n 20 "$log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "error: $name was not ready after $seconds s; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
}

# Waits until LOG contains PATTERN, with the same failure rules.
wait_for_log() {
    local log="$1" pattern="$2" pid="$3" seconds="$4" name="$5"
    for _ in $(seq 1 $((seconds * 10))); do
        grep -q -- "$pattern" "$log" 2>/dev/null && return 0
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "error: $name exited before it was ready; last lines of $log:" >&2
            tail -n 20 "$log" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "error: $name was not ready after $seconds s; last lines of $log:" >&2
    tail -n 20 "$log" >&2
    exit 1
}

vm_rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# User plus system CPU time of a process, in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
clock_ticks="$(getconf CLK_TCK)"

echo "== building release binaries"
(cd "$root" && cargo build --release --locked -p webwarden -p webwarden-load)
bin="$CARGO_TARGET_DIR/release"

if [ ! -x "$venv/bin/mitmdump" ]; then
    echo "== installing mitmproxy into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet mitmproxy
fi

echo "== machine"
{
    echo "date: $(date -u)"
    echo "nproc: $(nproc)"
    echo "cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "memory: $(awk '/^MemTotal:/ { printf "%.1f GiB\n", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel: $(uname -r)"
    echo "rustc: $(rustc --version)"
    echo "mitmproxy: $("$venv/bin/mitmdump" --version | awk '/^Mitmproxy:/ { print $2 }')"
    echo "python: $("$venv/bin/python" --version)"
    commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if [ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
        commit="$commit with uncommitted changes"
    fi
    echo "commit: $commit"
    # Other processes competing for the CPU skew every number; the load
    # average shows whether the machine was idle.
    echo "load average before: $(cut -d ' ' -f 1-3 /proc/loadavg)"
    echo "list: $list ($format)"
    echo "duration: $duration s per run after 1 s warmup; connections: $connection_counts; rounds: $rounds"
} | tee "$out/machine.txt"

echo "== starting the origin"
"$bin/webwarden-load" origin --ca-out "$work/origin-ca.pem" --addr-file "$work/origin.json" \
    --max-seconds 1800 >"$out/origin.log" 2>&1 &
origin_pid=$!
pids+=("$origin_pid")
wait_for_file "$work/origin.json" "$origin_pid" 30 origin "$out/origin.log"
http_port="$(sed -n 's/.*"http":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$work/origin.json")"
https_port="$(sed -n 's/.*"https":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$work/origin.json")"
echo "origin: http port $http_port, https port $https_port"

echo "== starting webwarden"
if [ "$format" = csv ]; then
    list_spec="$list"
else
    list_spec="path=$list,format=$format"
fi
started="$(date +%s.%N)"
SSL_CERT_FILE="$work/origin-ca.pem" "$bin/webwarden" run --listen 127.0.0.1:0 \
    --data-dir "$work/webwarden" --events-file "$work/events.jsonl" --list "$list_spec" \
    >"$out/webwarden.log" 2>&1 &
webwarden_pid=$!
pids+=("$webwarden_pid")
wait_for_log "$out/webwarden.log" "proxy listening on" "$webwarden_pid" 120 webwarden "$out/webwarden.log"
ready="$(date +%s.%N)"
webwarden_addr="$(grep -o 'proxy listening on 127\.0\.0\.1:[0-9]*' "$out/webwarden.log" | head -n 1 | awk '{ print $4 }')"
rss_loaded="$(vm_rss_kib "$webwarden_pid")"
load_seconds="$(awk -v start="$started" -v end="$ready" 'BEGIN { printf "%.2f", end - start }')"
echo "webwarden: $webwarden_addr, ready $load_seconds s after start, VmRSS $rss_loaded KiB" \
    | tee -a "$out/machine.txt"

echo "== starting mitmproxy"
mitm_port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
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

echo "| Path | Scheme | Connections | Origin CPU (µs/request) | Proxy CPU (µs/request) |" >"$out/cpu.md"
echo "| --- | --- | ---: | ---: | ---: |" >>"$out/cpu.md"

# Runs one measurement: PATH (direct, webwarden or mitmproxy), SCHEME,
# CONNECTIONS. Also appends the CPU time the origin and the proxy spent per
# request sent, warmup included, to cpu.md.
measure() {
    local path="$1" scheme="$2" connections="$3" port proxy_pid="" proxy_args=() ca_args=()
    local origin_before proxy_before=0 output sent origin_us proxy_us="-"
    if [ "$scheme" = http ]; then port="$http_port"; else port="$https_port"; fi
    case "$path" in
        direct) [ "$scheme" = https ] && ca_args=(--ca "$work/origin-ca.pem") ;;
        webwarden)
            proxy_pid="$webwarden_pid"
            proxy_args=(--proxy "$webwarden_addr")
            [ "$scheme" = https ] && ca_args=(--ca "$work/webwarden/ca.pem")
            ;;
        mitmproxy)
            proxy_pid="$mitm_pid"
            proxy_args=(--proxy "127.0.0.1:$mitm_port")
            [ "$scheme" = https ] && ca_args=(--ca "$work/mitmproxy/mitmproxy-ca-cert.pem")
            ;;
    esac
    echo "-- $path $scheme, $connections connection(s)"
    origin_before="$(cpu_ticks "$origin_pid")"
    [ -n "$proxy_pid" ] && proxy_before="$(cpu_ticks "$proxy_pid")"

    output="$("$bin/webwarden-load" run --url "$scheme://localhost:$port/" "${proxy_args[@]}" "${ca_args[@]}" \
        --connections "$connections" --warmup 1 --duration "$duration" --max-requests 5000000 \
        --label "$path" --list "$list" --results "$out/results.jsonl" --markdown "$out/table.md")"
    echo "${output##*$'\n'}"

    sent="$(sed -n '1s/.*"sent":\([0-9]*\).*/\1/p' <<<"$output")"
    origin_us="$(awk -v ticks="$(($(cpu_ticks "$origin_pid") - origin_before))" -v hz="$clock_ticks" \
        -v sent="$sent" 'BEGIN { printf "%.1f", ticks * 1e6 / hz / sent }')"
    if [ -n "$proxy_pid" ]; then
        proxy_us="$(awk -v ticks="$(($(cpu_ticks "$proxy_pid") - proxy_before))" -v hz="$clock_ticks" \
            -v sent="$sent" 'BEGIN { printf "%.1f", ticks * 1e6 / hz / sent }')"
    fi
    echo "| $path | $scheme | $connections | $origin_us | $proxy_us |" >>"$out/cpu.md"
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
