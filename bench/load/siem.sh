#!/usr/bin/env bash
# Measures requests per second and latency of plain HTTP and intercepted
# HTTPS through two webwarden instances that differ only in whether their
# SIEM sinks are reachable:
# - sinks-up sends to `webwarden-load sink-receivers`, an HTTP receiver
#   that returns 200 to every POST and a syslog TCP receiver that discards
#   what it reads;
# - sinks-down sends to loopback ports where nothing listens, so every
#   delivery fails and the events stay in its spool.
# Each round measures both instances for every scheme and connection count,
# one right after the other, and alternates which goes first. After a
# sinks-up run the script waits until the receivers stop receiving, so the
# backlog of one run does not load the next. It also records each
# instance's spool size and VmRSS after every run.
#
# Usage: bench/load/siem.sh [LIST]
#
# common.sh describes LIST, the settings, and how the script keeps to
# loopback and stops what it started. The receivers, like the origin, exit
# by themselves after 30 minutes. WEBWARDEN_BENCH_DRAIN_SECONDS bounds the
# wait for the receivers after a sinks-up run (default: 300).
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=common.sh
source "$(dirname "$0")/common.sh"
drain_limit="${WEBWARDEN_BENCH_DRAIN_SECONDS:-300}"

build_release

echo "== machine"
describe_machine | tee "$out/machine.txt"

start_origin

echo "== starting the sink receivers"
"$bin/webwarden-load" sink-receivers --addr-file "$work/receivers.json" \
    --stats-file "$work/receivers-stats.json" --max-seconds 1800 >"$out/receivers.log" 2>&1 &
receivers_pid=$!
pids+=("$receivers_pid")
wait_for_file "$work/receivers.json" "$receivers_pid" 30 "sink receivers" "$out/receivers.log"
receiver_http="$(sed -n 's/.*"http":"\(127\.0\.0\.1:[0-9]*\)".*/\1/p' "$work/receivers.json")"
receiver_syslog="$(sed -n 's/.*"syslog":"\(127\.0\.0\.1:[0-9]*\)".*/\1/p' "$work/receivers.json")"
# Ports that were free a moment ago, for the receivers that are down.
down_http="127.0.0.1:$(free_port)"
down_syslog="127.0.0.1:$(free_port)"
echo "receivers: http $receiver_http, syslog $receiver_syslog; down: http $down_http, syslog $down_syslog" \
    | tee -a "$out/machine.txt"

start_webwarden sinks-up --siem-http "http://$receiver_http" --siem-syslog "tcp://$receiver_syslog"
up_pid="$webwarden_pid"
up_addr="$webwarden_addr"
start_webwarden sinks-down --siem-http "http://$down_http" --siem-syslog "tcp://$down_syslog"
down_pid="$webwarden_pid"
down_addr="$webwarden_addr"

mib() {
    awk -v bytes="$1" 'BEGIN { printf "%.1f", bytes / 1048576 }'
}

spool_bytes() {
    du -sb "$work/$1/spool" | cut -f 1
}

# Waits until the receivers' counts stay the same for 1 s, at most
# $drain_limit seconds, and sets drain_seconds to the time it took.
wait_for_drain() {
    local started previous="" current
    started="$(date +%s.%N)"
    for _ in $(seq 1 $((drain_limit * 2))); do
        sleep 0.5
        current="$(cat "$work/receivers-stats.json")"
        if [ "$current" = "$previous" ]; then
            drain_seconds="$(awk -v start="$started" -v end="$(date +%s.%N)" 'BEGIN { printf "%.1f", end - start - 1 }')"
            return 0
        fi
        previous="$current"
    done
    echo "warning: the receivers were still receiving after $drain_limit s" >&2
    drain_seconds=">$drain_limit"
}

echo "| Round | Sinks | Scheme | Connections | Requests sent | Receivers CPU (µs/request) | Spool after run (MiB) | Receivers done after (s) | Spool then (MiB) | VmRSS after run (MiB) |" >"$out/spool.md"
echo "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" >>"$out/spool.md"

# Runs one measurement of sinks-up or sinks-down and appends its row to
# spool.md. The receivers' CPU time counts the run only, as the proxy's in
# cpu.md does, not the wait for the backlog after it.
measure_sinks() {
    local name="$1" scheme="$2" connections="$3" pid addr receivers_before receivers_us
    local spool_after drained="-" spool_drained="-"
    if [ "$name" = sinks-up ]; then pid="$up_pid" addr="$up_addr"; else pid="$down_pid" addr="$down_addr"; fi
    receivers_before="$(cpu_ticks "$receivers_pid")"
    measure_path "$name" "$scheme" "$connections" "$work/$name/ca.pem" "$pid" "$addr"
    receivers_us="$(awk -v ticks="$(($(cpu_ticks "$receivers_pid") - receivers_before))" -v hz="$clock_ticks" \
        -v sent="$sent" 'BEGIN { printf "%.1f", ticks * 1e6 / hz / sent }')"
    spool_after="$(spool_bytes "$name")"
    if [ "$name" = sinks-up ]; then
        wait_for_drain
        drained="$drain_seconds"
        spool_drained="$(mib "$(spool_bytes "$name")")"
    fi
    echo "| $round | $name | $scheme | $connections | $sent | $receivers_us | $(mib "$spool_after") | $drained | $spool_drained | $(mib "$(($(vm_rss_kib "$pid") * 1024))") |" \
        >>"$out/spool.md"
}

for round in $(seq 1 "$rounds"); do
    echo "== measuring, round $round of $rounds"
    if ((round % 2 == 1)); then order="sinks-up sinks-down"; else order="sinks-down sinks-up"; fi
    for scheme in http https; do
        for connections in $connection_counts; do
            for name in $order; do
                measure_sinks "$name" "$scheme" "$connections"
            done
        done
    done
done

echo "load average after: $(cut -d ' ' -f 1-3 /proc/loadavg)" | tee -a "$out/machine.txt"
{
    for name in sinks-up sinks-down; do
        if [ "$name" = sinks-up ]; then pid="$up_pid"; else pid="$down_pid"; fi
        echo "$name: VmRSS $(vm_rss_kib "$pid") KiB after the runs, VmHWM $(vm_hwm_kib "$pid") KiB," \
            "spool $(spool_bytes "$name") bytes;" \
            "log lines: $(grep -c 'SIEM delivery failed' "$out/$name.log" || true) delivery failed," \
            "$(grep -c 'the spool is full' "$out/$name.log" || true) spool full," \
            "$(grep -c 'request event lost' "$out/$name.log" || true) request event lost"
    done
    echo "receivers: $(cat "$work/receivers-stats.json")"
} | tee -a "$out/machine.txt"

echo "== summary"
"$bin/webwarden-load" summary --results "$out/results.jsonl" \
    --compare sinks-down --baseline sinks-up | tee "$out/summary.md"
cat "$out/spool.md"
echo "results in $out"
