# Settings and helpers shared by run.sh and siem.sh, which source this file
# with their own arguments. Sourcing it reads the settings, creates the
# results and work folders, and installs the traps that stop every started
# process on exit.
#
# LIST, the first argument, or WEBWARDEN_BENCH_LIST, is the list the
# proxies load. The default is the repository's blacklist.csv. These
# environment variables set the rest:
# - WEBWARDEN_BENCH_LIST_FORMAT: csv or domains (default: csv for *.csv, else domains).
# - WEBWARDEN_BENCH_DURATION: measured seconds per run (default: 10).
# - WEBWARDEN_BENCH_CONNECTIONS: connection counts to run (default: "1 64").
# - WEBWARDEN_BENCH_ROUNDS: rounds over all runs; the summary reports medians (default: 3).
# - WEBWARDEN_BENCH_OUT: results folder (default: ~/.cache/webwarden-bench-results/TIME).
# - CARGO_TARGET_DIR: cargo target folder (default: ~/.cache/webwarden-load-target).
#
# Every server listens on 127.0.0.1 and every request goes to loopback.
# Each run is bounded by time and by request count, and the origin exits by
# itself after 30 minutes. When the script exits, it stops every process it
# started by PID (unless the script itself is killed by SIGKILL).
# shellcheck shell=bash

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
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
if [ "$format" = csv ]; then
    list_spec="$list"
else
    list_spec="path=$list,format=$format"
fi
duration="${WEBWARDEN_BENCH_DURATION:-10}"
connection_counts="${WEBWARDEN_BENCH_CONNECTIONS:-1 64}"
rounds="${WEBWARDEN_BENCH_ROUNDS:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/webwarden-load-target}"
bin="$CARGO_TARGET_DIR/release"
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

# Runs the command given after NAME, PID, SECONDS and LOG every 0.1 s until
# it succeeds. Exits the script with the last lines of LOG when the process
# NAME with PID exits first or SECONDS pass.
wait_until_ready() {
    local name="$1" pid="$2" seconds="$3" log="$4"
    shift 4
    for _ in $(seq 1 $((seconds * 10))); do
        "$@" && return 0
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

# Waits until FILE exists and is not empty: FILE PID SECONDS NAME LOG.
wait_for_file() {
    wait_until_ready "$4" "$2" "$3" "$5" test -s "$1"
}

log_contains() {
    grep -q -- "$2" "$1" 2>/dev/null
}

# Waits until LOG contains PATTERN: LOG PATTERN PID SECONDS NAME.
wait_for_log() {
    wait_until_ready "$5" "$3" "$4" "$1" log_contains "$1" "$2"
}

vm_rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# Peak resident memory of a process since it started, in KiB.
vm_hwm_kib() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

# User plus system CPU time of a process, in clock ticks.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}
clock_ticks="$(getconf CLK_TCK)"

# CPU time of this script, its waited-for children (the load generator and
# the helper commands) and every process in `pids`, in clock ticks.
own_ticks() {
    local pid total
    total="$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$$/stat")"
    for pid in "${pids[@]}"; do
        total=$((total + $(cpu_ticks "$pid")))
    done
    echo "$total"
}

# Busy CPU time of the whole machine, all CPUs, in clock ticks: user, nice,
# system, irq and softirq from /proc/stat. Steal time is left out because
# no process of this machine spends it.
machine_busy_ticks() {
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat
}

# Prints a loopback TCP port that was free a moment ago.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

build_release() {
    echo "== building release binaries"
    (cd "$root" && cargo build --release --locked -p webwarden -p webwarden-load)
}

# Prints the machine, toolchain and settings lines of machine.txt.
describe_machine() {
    local commit
    echo "date: $(date -u)"
    echo "nproc: $(nproc)"
    echo "cpu: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "memory: $(awk '/^MemTotal:/ { printf "%.1f GiB\n", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel: $(uname -r)"
    echo "rustc: $(rustc --version)"
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
}

# Starts the origin and sets origin_pid, http_port and https_port.
start_origin() {
    echo "== starting the origin"
    "$bin/webwarden-load" origin --ca-out "$work/origin-ca.pem" --addr-file "$work/origin.json" \
        --max-seconds 1800 >"$out/origin.log" 2>&1 &
    origin_pid=$!
    pids+=("$origin_pid")
    wait_for_file "$work/origin.json" "$origin_pid" 30 origin "$out/origin.log"
    http_port="$(sed -n 's/.*"http":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$work/origin.json")"
    https_port="$(sed -n 's/.*"https":"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$work/origin.json")"
    echo "origin: http port $http_port, https port $https_port"
}

# Starts `webwarden run` as NAME with the list, trusting the origin's CA,
# its state in $work/NAME and its log in $out/NAME.log; further arguments
# go to `webwarden run`. Sets webwarden_pid, webwarden_addr and rss_loaded
# (VmRSS in KiB once it listens), and appends the start to machine.txt.
start_webwarden() {
    local name="$1" started ready load_seconds
    shift
    echo "== starting $name"
    started="$(date +%s.%N)"
    SSL_CERT_FILE="$work/origin-ca.pem" "$bin/webwarden" run --listen 127.0.0.1:0 \
        --data-dir "$work/$name" --list "$list_spec" "$@" >"$out/$name.log" 2>&1 &
    webwarden_pid=$!
    pids+=("$webwarden_pid")
    wait_for_log "$out/$name.log" "proxy listening on" "$webwarden_pid" 120 "$name" "$out/$name.log"
    ready="$(date +%s.%N)"
    webwarden_addr="$(grep -o 'proxy listening on 127\.0\.0\.1:[0-9]*' "$out/$name.log" | head -n 1 | awk '{ print $4 }')"
    rss_loaded="$(vm_rss_kib "$webwarden_pid")"
    load_seconds="$(awk -v start="$started" -v end="$ready" 'BEGIN { printf "%.2f", end - start }')"
    echo "$name: $webwarden_addr, ready $load_seconds s after start, VmRSS $rss_loaded KiB" \
        | tee -a "$out/machine.txt"
}

echo "| Path | Scheme | Connections | Origin CPU (µs/request) | Proxy CPU (µs/request) | Other CPU (% of one CPU) |" >"$out/cpu.md"
echo "| --- | --- | ---: | ---: | ---: | ---: |" >>"$out/cpu.md"

# Runs one measurement: LABEL, SCHEME, CONNECTIONS, then the CA file to
# trust for HTTPS, and for a run through a proxy its PID and address. Sets
# `sent` to the requests sent, warmup included. Also appends to cpu.md the
# CPU time the origin and the proxy spent per request sent. The last column
# of cpu.md is the busy CPU time of the machine outside the processes of
# this script during the run. It covers other processes, kernel threads,
# and interrupts that hit an idle CPU.
measure_path() {
    local label="$1" scheme="$2" connections="$3" ca="${4:-}" proxy_pid="${5:-}" proxy_addr="${6:-}"
    local port proxy_args=() ca_args=() origin_before proxy_before=0 own_before busy_before
    local started finished output origin_us proxy_us="-" other_percent
    if [ "$scheme" = http ]; then port="$http_port"; else port="$https_port"; fi
    [ -n "$proxy_addr" ] && proxy_args=(--proxy "$proxy_addr")
    [ "$scheme" = https ] && ca_args=(--ca "$ca")
    echo "-- $label $scheme, $connections connection(s)"
    origin_before="$(cpu_ticks "$origin_pid")"
    [ -n "$proxy_pid" ] && proxy_before="$(cpu_ticks "$proxy_pid")"
    own_before="$(own_ticks)"
    busy_before="$(machine_busy_ticks)"
    started="$(date +%s.%N)"

    output="$("$bin/webwarden-load" run --url "$scheme://localhost:$port/" "${proxy_args[@]}" "${ca_args[@]}" \
        --connections "$connections" --warmup 1 --duration "$duration" --max-requests 5000000 \
        --label "$label" --list "$list" --results "$out/results.jsonl" --markdown "$out/table.md")"
    echo "${output##*$'\n'}"

    finished="$(date +%s.%N)"
    other_percent="$(awk -v busy="$(($(machine_busy_ticks) - busy_before))" -v own="$(($(own_ticks) - own_before))" \
        -v hz="$clock_ticks" -v start="$started" -v end="$finished" \
        'BEGIN { other = busy - own; if (other < 0) other = 0; printf "%.0f", other * 100 / hz / (end - start) }')"
    sent="$(sed -n '1s/.*"sent":\([0-9]*\).*/\1/p' <<<"$output")"
    origin_us="$(awk -v ticks="$(($(cpu_ticks "$origin_pid") - origin_before))" -v hz="$clock_ticks" \
        -v sent="$sent" 'BEGIN { printf "%.1f", ticks * 1e6 / hz / sent }')"
    if [ -n "$proxy_pid" ]; then
        proxy_us="$(awk -v ticks="$(($(cpu_ticks "$proxy_pid") - proxy_before))" -v hz="$clock_ticks" \
            -v sent="$sent" 'BEGIN { printf "%.1f", ticks * 1e6 / hz / sent }')"
    fi
    echo "| $label | $scheme | $connections | $origin_us | $proxy_us | $other_percent |" >>"$out/cpu.md"
}
