#!/usr/bin/env bash
# Proxy benchmark, for make bench: netd's TLS reverse proxy (services/netd/internal/proxy,
# run as its test binary's TestBenchServe) against Debian's nginx configured as the same
# TLS reverse proxy, and against a direct HTTPS connection to the backend, all in one run
# on loopback.
#
# The backend is an nginx of its own serving a static 1 KiB and 1 MiB file, over plain
# HTTP (what both proxies forward to, with keep-alive upstream connections) and over TLS
# (the direct connection). The proxies terminate TLS for "localhost" with the same
# self-signed certificate and TLS 1.3 suite (AES-128-GCM, which Go's server picks); nginx
# has http2 on, proxy_http_version 1.1, an upstream keepalive pool and the forwarding
# headers set, as our proxy does, and buffers enough to hold a 1 MiB answer in memory
# (its defaults would spill it to a temporary file). Each proxy gets the whole machine
# the same way: nginx one worker per CPU (worker_processes auto), ours as many Go
# processors (GOMAXPROCS's default); nothing is pinned; the backend, wrk and h2load are
# shared. The load is wrk's (HTTP/1.1, keep-alive):
#   - throughput: -t2 -c32, requests per second for each file;
#   - latency: -t1 -c1 on the 1 KiB file (one request at a time, so no queueing),
#     p50 and p99; added latency = a proxy's minus the direct connection's; and, as the
#     floor any proxy pays here, the added latency of our proxy relaying the TLS
#     connection unopened (passthrough: one more process hop, no TLS or HTTP work).
# plus, when h2load is there, HTTP/2 requests per second for the 1 KiB file (-c8 -m10).
# Each measurement is taken BENCH_PROXY_RUNS times, interleaving the three targets;
# medians are printed as
#   PROXY <target> rps_1k=<r/s> rps_1m=<r/s> p50_us=<µs> p99_us=<µs> h2_rps_1k=<r/s> runs=<n>
# then ratios ours/nginx and the added latencies. Nginx and our proxy run as this
# script's own processes (config, pid file and logs in a temporary directory) and are
# stopped by their PIDs.
#   usage: bench/proxy.sh
#   env: BENCH_PROXY_RUNS (3), BENCH_PROXY_SECONDS (5: each wrk run)
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."

runs=${BENCH_PROXY_RUNS:-3}
secs=${BENCH_PROXY_SECONDS:-5}
log() { echo "proxy-bench: $*" >&2; }

for tool in nginx wrk openssl curl; do
	if ! command -v "$tool" >/dev/null; then
		echo "PROXY skipped reason=no-$tool (deploy/install-deps.sh installs it)"
		exit 0
	fi
done
nginx_bin=$(command -v nginx)

work=$(mktemp -d "${TMPDIR:-/tmp}/hearth-proxy-bench.XXXXXX")
pids=()
cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
chmod 755 "$work" # nginx's workers run as nobody

# free_port: a loopback TCP port nothing listens on.
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
}
# wait_port PORT: until something accepts on it (10 s).
wait_port() {
	local i
	for i in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	log "nothing listens on port $1 after 10 s"
	return 1
}

log "building the proxy and writing the configuration in $work"
(cd services/netd && go test -c -o "$work/proxy.test" ./internal/proxy/)
mkdir -p "$work/www" "$work/backend" "$work/nginx"
head -c 1024 /dev/urandom >"$work/www/1k.bin"
head -c 1048576 /dev/urandom >"$work/www/1m.bin"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=localhost -addext subjectAltName=DNS:localhost \
	-keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
chmod 644 "$work/key.pem" "$work/www/"*

backend_plain=$(free_port)
backend_tls=$(free_port)
ours=$(free_port)
theirs=$(free_port)
relay=$(free_port)

# Shared by both nginx instances.
tls_conf="ssl_certificate $work/cert.pem;
		ssl_certificate_key $work/key.pem;
		ssl_protocols TLSv1.2 TLSv1.3;
		ssl_prefer_server_ciphers on;
		ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
		ssl_session_cache shared:SSL:1m;"
# nginx_conf DIR BODY: a whole configuration for an instance living in DIR.
nginx_conf() {
	cat <<EOF
worker_processes auto;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 1000000;
	keepalive_timeout 120s;
	client_body_temp_path $1/client_body;
	proxy_temp_path $1/proxy;
	fastcgi_temp_path $1/fastcgi;
	uwsgi_temp_path $1/uwsgi;
	scgi_temp_path $1/scgi;
	$2
}
EOF
}
nginx_conf "$work/backend" "
	server {
		listen 127.0.0.1:$backend_plain;
		listen 127.0.0.1:$backend_tls ssl http2;
		$tls_conf
		root $work/www;
	}" >"$work/backend/nginx.conf"
nginx_conf "$work/nginx" "
	upstream backend {
		server 127.0.0.1:$backend_plain;
		keepalive 64;
	}
	server {
		listen 127.0.0.1:$theirs ssl http2;
		$tls_conf
		location / {
			proxy_pass http://backend;
			proxy_http_version 1.1;
			proxy_set_header Connection \"\";
			proxy_set_header Host \$host;
			proxy_set_header X-Forwarded-For \$remote_addr;
			proxy_set_header X-Forwarded-Host \$host;
			proxy_set_header X-Forwarded-Proto \$scheme;
			# A 1 MiB answer fits in memory: no temporary file.
			proxy_buffer_size 16k;
			proxy_buffers 64 16k;
			proxy_busy_buffers_size 64k;
		}
	}" >"$work/nginx/nginx.conf"

# start NAME CMD...: runs CMD in the background, logs in $work/NAME.log.
start() {
	local name=$1
	shift
	"$@" >"$work/$name.log" 2>&1 &
	pids+=($!)
}
start backend "$nginx_bin" -e "$work/backend/error.log" -p "$work/backend" -c "$work/backend/nginx.conf" -g 'daemon off;'
start nginx "$nginx_bin" -e "$work/nginx/error.log" -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;'
HEARTH_PROXY_BENCH_LISTEN=127.0.0.1:$ours HEARTH_PROXY_BENCH_NAME=localhost \
	HEARTH_PROXY_BENCH_BACKEND=127.0.0.1:$backend_plain \
	HEARTH_PROXY_BENCH_CERT="$work/cert.pem" HEARTH_PROXY_BENCH_KEY="$work/key.pem" \
	start hearth "$work/proxy.test" -test.run '^TestBenchServe$' -test.timeout 0
# The floor: the same proxy relaying the TLS connections unopened to the TLS backend (one
# more process hop, no TLS or HTTP work). Only its latency is measured.
HEARTH_PROXY_BENCH_LISTEN=127.0.0.1:$relay HEARTH_PROXY_BENCH_NAME=localhost \
	HEARTH_PROXY_BENCH_BACKEND=127.0.0.1:$backend_tls HEARTH_PROXY_BENCH_KIND=passthrough \
	HEARTH_PROXY_BENCH_CERT="$work/cert.pem" HEARTH_PROXY_BENCH_KEY="$work/key.pem" \
	start relay "$work/proxy.test" -test.run '^TestBenchServe$' -test.timeout 0
for p in $backend_plain $backend_tls $ours $theirs $relay; do
	wait_port "$p" || { tail -n 20 "$work"/*.log "$work"/*/error.log >&2 || true; exit 1; }
done

declare -A port=([direct]=$backend_tls [hearth]=$ours [nginx]=$theirs [relay]=$relay)
targets=(direct hearth nginx)
for t in "${targets[@]}"; do
	for f in 1k.bin 1m.bin; do
		if ! curl -sk --fail -o /dev/null "https://localhost:${port[$t]}/$f"; then
			log "$t: GET /$f failed"
			echo "PROXY $t failed reason=get-$f"
			exit 1
		fi
	done
done

# us VALUE: a wrk duration (123.45us, 1.20ms, 2.00s) in microseconds.
us() {
	awk -v v="$1" 'BEGIN {
		n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
		if (u == "ms") n *= 1000; else if (u == "s") n *= 1000000; else if (u == "m") n *= 60000000
		printf "%.1f\n", n }'
}
# wrk_run TARGET FILE THREADS CONNS OUT: one wrk run; appends "rps p50 p99" to OUT.
wrk_run() {
	local out
	out=$(wrk -t"$3" -c"$4" -d"${secs}s" --latency "https://localhost:${port[$1]}/$2")
	if grep -q 'Non-2xx\|Socket errors' <<<"$out"; then
		log "$1 $2: errors: $(grep 'Non-2xx\|Socket errors' <<<"$out")"
	fi
	local rps p50 p99
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	p50=$(us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
	p99=$(us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
	echo "$rps $p50 $p99" >>"$5"
}
# h2_run TARGET OUT: one h2load run over HTTP/2 on the 1 KiB file; appends rps to OUT.
h2_run() {
	local out
	out=$(h2load -D "$secs" -c 8 -m 10 -t 2 "https://localhost:${port[$1]}/1k.bin" 2>&1) || true
	awk '/^finished in/ {gsub(",", ""); print $4}' <<<"$out" >>"$2"
}
have_h2load=false
command -v h2load >/dev/null && have_h2load=true

for run in $(seq "$runs"); do
	log "run $run of $runs"
	for t in "${targets[@]}"; do
		wrk_run "$t" 1k.bin 2 32 "$work/$t.1k"
		wrk_run "$t" 1m.bin 2 32 "$work/$t.1m"
		wrk_run "$t" 1k.bin 1 1 "$work/$t.lat"
		if $have_h2load; then h2_run "$t" "$work/$t.h2"; fi
	done
	wrk_run relay 1k.bin 1 1 "$work/relay.lat"
done

# med FILE COLUMN: the median of a column.
med() {
	[ -s "$1" ] || { echo NA; return; }
	awk -v c="$2" '{print $c}' "$1" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'
}
declare -A rps1k rps1m p50 p99 h2
for t in "${targets[@]}"; do
	rps1k[$t]=$(med "$work/$t.1k" 1)
	rps1m[$t]=$(med "$work/$t.1m" 1)
	p50[$t]=$(med "$work/$t.lat" 2)
	p99[$t]=$(med "$work/$t.lat" 3)
	h2[$t]=$(med "$work/$t.h2" 1)
	echo "PROXY $t rps_1k=${rps1k[$t]} rps_1m=${rps1m[$t]} p50_us=${p50[$t]} p99_us=${p99[$t]} h2_rps_1k=${h2[$t]} runs=$runs"
done
p50[relay]=$(med "$work/relay.lat" 2)
p99[relay]=$(med "$work/relay.lat" 3)
echo "PROXY relay p50_us=${p50[relay]} p99_us=${p99[relay]} runs=$runs"
awk -v a1="${rps1k[hearth]}" -v b1="${rps1k[nginx]}" -v d1="${rps1k[direct]}" \
	-v a2="${rps1m[hearth]}" -v b2="${rps1m[nginx]}" -v d2="${rps1m[direct]}" \
	-v ah="${h2[hearth]}" -v bh="${h2[nginx]}" -v dh="${h2[direct]}" \
	-v hp50="${p50[hearth]}" -v np50="${p50[nginx]}" -v dp50="${p50[direct]}" \
	-v hp99="${p99[hearth]}" -v np99="${p99[nginx]}" -v dp99="${p99[direct]}" \
	-v rp50="${p50[relay]}" -v rp99="${p99[relay]}" 'BEGIN {
	printf "\n%-34s %12s %12s %12s %14s\n", "proxy (HTTPS, keep-alive)", "hearth", "nginx", "direct", "hearth/nginx"
	printf "%-34s %12.0f %12.0f %12.0f %14.2f\n", "req/s 1 KiB (wrk -t2 -c32)", a1, b1, d1, a1 / b1
	printf "%-34s %12.0f %12.0f %12.0f %14.2f\n", "req/s 1 MiB (wrk -t2 -c32)", a2, b2, d2, a2 / b2
	if (ah != "NA" && bh != "NA" && bh > 0)
		printf "%-34s %12.0f %12.0f %12.0f %14.2f\n", "req/s 1 KiB HTTP/2 (h2load)", ah, bh, dh, ah / bh
	printf "%-34s %12.1f %12.1f %12.1f\n", "latency p50 us (wrk -t1 -c1)", hp50, np50, dp50
	printf "%-34s %12.1f %12.1f %12.1f\n", "latency p99 us (wrk -t1 -c1)", hp99, np99, dp99
	printf "%-34s %12.1f %12.1f\n", "added latency p50 us", hp50 - dp50, np50 - dp50
	printf "%-34s %12.1f %12.1f\n", "added latency p99 us", hp99 - dp99, np99 - dp99
	printf "%-34s %12.1f %12.1f\n", "floor: a bare relay hop adds p50/p99", rp50 - dp50, rp99 - dp99
	printf "goal: req/s >= 0.9x nginx, added p50 <= 100 us\n"
}'
