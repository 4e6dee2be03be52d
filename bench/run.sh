#!/usr/bin/env bash
# bench/run.sh: benchmark gatehouse against Caddy v2.11.9 and nginx, all three
# in front of one origin on loopback with the same certificate (issue 3).
#
#   bash bench/run.sh [--rounds N] [--duration 10s] [--cases 1,2,3,4,5,6,7,8]
#                     [--proxies gatehouse,caddy,nginx,direct] [--ref COMMIT]
#
# Installs what is missing (wrk, h2load, nginx from Debian; Caddy with go
# install), builds gatehouse from this checkout's working tree (from COMMIT
# with --ref; from HEAD when the working tree does not build), runs every
# case for every proxy interleaved over the rounds, and prints the medians.
# "direct" is no proxy at all: the origin program itself serving TLS, the
# ceiling any Go proxy could reach here (cases 1-5). Cases 7 and 8 are
# gatehouse alone: file against etcd storage, and a fleet's issuance.
# Work files, the Caddy build and results.md live in
# ${BENCH_WORK:-/tmp/gatehouse-bench}. Every request goes to 127.0.0.1;
# every process it starts is stopped on exit. See bench/README.md.
set -euo pipefail

ROUNDS=3
DURATION=10s
CASES=1,2,3,4,5,6,7,8
FLEET_NAMES=${BENCH_FLEET_NAMES:-100}
PROXIES=gatehouse,caddy,nginx,direct
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
SITES=${BENCH_SITES:-10000}
CADDY_VERSION=v2.11.9
REF=
GATEHOUSE_BUILT=

usage() { sed -n '2,/^set -euo/p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; }
while (($#)); do
	case $1 in
	--rounds) ROUNDS=${2:?--rounds needs a value}; shift 2 ;;
	--duration) DURATION=${2:?--duration needs a value}; shift 2 ;;
	--cases) CASES=${2:?--cases needs a value}; shift 2 ;;
	--proxies) PROXIES=${2:?--proxies needs a value}; shift 2 ;;
	--ref) REF=${2:?--ref needs a commit}; shift 2 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
	esac
done
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --rounds wants a positive integer" >&2; exit 2; }
if [[ $DURATION =~ ^([0-9]+)(ms|s|m)?$ ]]; then
	case ${BASH_REMATCH[2]} in
	ms) DSEC=$(((BASH_REMATCH[1] + 999) / 1000)) ;;
	m) DSEC=$((BASH_REMATCH[1] * 60)) ;;
	*) DSEC=${BASH_REMATCH[1]} ;;
	esac
	DURATION=${DSEC}s
else
	echo "run.sh: --duration wants e.g. 10s, 500ms or 1m" >&2; exit 2
fi
((DSEC >= 1)) || DSEC=1
[[ $CASES =~ ^[1-8](,[1-8])*$ ]] || { echo "run.sh: --cases wants numbers 1-8, comma-separated" >&2; exit 2; }
[[ $PROXIES =~ ^(gatehouse|caddy|nginx|direct)(,(gatehouse|caddy|nginx|direct))*$ ]] ||
	{ echo "run.sh: --proxies wants gatehouse, caddy, nginx and/or direct, comma-separated" >&2; exit 2; }

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=${BENCH_WORK:-/tmp/gatehouse-bench}
BIN=$WORK/bin
RUN=$WORK/run # this run's configs, logs and load-tool output
mkdir -p "$BIN"
# Only ever delete a directory this script made (it leaves a marker in it).
if [[ -e $RUN && ! -e $RUN/.gatehouse-bench ]]; then
	echo "run.sh: $RUN exists and was not made by run.sh; set BENCH_WORK elsewhere" >&2
	exit 2
fi
rm -rf "$RUN"
mkdir -p "$RUN"
touch "$RUN/.gatehouse-bench"

ORIGIN_PORT=${BENCH_ORIGIN_PORT:-18080}
declare -A PORT=([gatehouse]=18443 [caddy]=18444 [nginx]=18445 [direct]=18447)
CASE6_PORT=18446
CASE7_PORT=18448
ETCD_PORT=${BENCH_ETCD_PORT:-18479} # and the next one, its peer port
LUA=$REPO/bench/loopback.lua

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- processes: everything started is recorded and stopped on exit --------

PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop_pid PID: SIGTERM, up to 10 s to exit, then SIGKILL.
stop_pid() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# ---- install and build ----------------------------------------------------

install_tools() {
	local missing=()
	command -v wrk >/dev/null || missing+=(wrk)
	command -v h2load >/dev/null || missing+=(nghttp2-client)
	command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
	if ((${#missing[@]})); then
		local sudo=()
		((EUID == 0)) || sudo=(sudo)
		log "installing ${missing[*]} from Debian"
		"${sudo[@]}" apt-get update -q
		DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q "${missing[@]}"
	fi
	NGINX=$(command -v nginx || echo /usr/sbin/nginx)

	if [[ $(caddy_version) != "$CADDY_VERSION" ]]; then
		log "building Caddy $CADDY_VERSION into $BIN (takes minutes, once)"
		(cd "$WORK" && GOBIN=$BIN GOFLAGS= go install "github.com/caddyserver/caddy/v2/cmd/caddy@$CADDY_VERSION")
	fi

	log "building the benchmark's own programs"
	(cd "$REPO" && go build -o "$BIN/" ./bench/cmd/...)

	if want gatehouse && ! build_gatehouse; then
		log "warning: gatehouse does not build; measuring the peers only"
		PROXIES=$(tr ',' '\n' <<<"$PROXIES" | grep -vx gatehouse | paste -sd, || true)
	fi
}

# build_gatehouse: from the working tree, or from a clean export of $REF (or
# of HEAD when the working tree does not build), into $BIN/gatehouse. Sets
# GATEHOUSE_BUILT to what was built.
build_gatehouse() {
	local ref=$REF sha src
	if [[ -z $ref ]]; then
		log "building gatehouse from the working tree $REPO"
		if (cd "$REPO" && go build -o "$BIN/gatehouse" ./cmd/gatehouse) 2>"$RUN/gatehouse-build.log"; then
			GATEHOUSE_BUILT="working tree at $(git -C "$REPO" describe --always --dirty 2>/dev/null || echo '?')"
			return 0
		fi
		sed -n '1,10p' "$RUN/gatehouse-build.log" >&2
		log "warning: the working tree does not build (all of it in $RUN/gatehouse-build.log); trying HEAD"
		ref=HEAD
	fi
	sha=$(git -C "$REPO" rev-parse --verify "$ref^{commit}") || return 1
	src=$WORK/src/$sha
	if ! [[ -d $src ]]; then
		mkdir -p "$src.tmp"
		git -C "$REPO" archive "$sha" | tar -x -C "$src.tmp"
		mv "$src.tmp" "$src"
	fi
	log "building gatehouse from commit ${sha:0:12}"
	if ! (cd "$src" && go build -o "$BIN/gatehouse" ./cmd/gatehouse) 2>>"$RUN/gatehouse-build.log"; then
		tail -n 10 "$RUN/gatehouse-build.log" >&2
		return 1
	fi
	GATEHOUSE_BUILT="commit ${sha:0:12}"
}

# caddy_version: the module version $BIN/caddy was built from ("caddy
# version" says "unknown" for a go install build).
caddy_version() {
	[[ -x $BIN/caddy ]] && go version -m "$BIN/caddy" | awk '$1 == "mod" {print $3}'
}

want() { [[ ,$PROXIES, == *,$1,* ]]; }
want_case() { [[ ,$CASES, == *,$1,* ]]; }

# ---- configs --------------------------------------------------------------

CERT=$RUN/cert.pem
KEY=$RUN/key.pem

write_configs() {
	"$BIN/certgen" -dir "$RUN"

	gatehouse_config "$RUN/gatehouse.yaml" "${PORT[gatehouse]}" bench.test

	mkdir -p "$RUN/caddy"
	cat >"$RUN/Caddyfile" <<EOF
{
	admin off
	persist_config off
	auto_https off
	storage file_system $RUN/caddy/data
	servers {
		protocols h1 h2
	}
	log {
		level ERROR
	}
}

https://bench.test:${PORT[caddy]} {
	tls $CERT $KEY
	reverse_proxy 127.0.0.1:$ORIGIN_PORT
}
EOF

	mkdir -p "$RUN/nginx/logs"
	cat >"$RUN/nginx/nginx.conf" <<EOF
worker_processes auto;
worker_rlimit_nofile $(ulimit -n);
daemon off;
pid $RUN/nginx/nginx.pid;
error_log $RUN/nginx/logs/error.log warn;

events {
	worker_connections $(ulimit -n);
}

http {
	access_log off;
	keepalive_requests 1000000;
	client_body_temp_path $RUN/nginx/client_body;
	proxy_temp_path $RUN/nginx/proxy;
	fastcgi_temp_path $RUN/nginx/fastcgi;
	uwsgi_temp_path $RUN/nginx/uwsgi;
	scgi_temp_path $RUN/nginx/scgi;

	upstream origin {
		server 127.0.0.1:$ORIGIN_PORT;
		keepalive 64;
	}

	server {
		listen 127.0.0.1:${PORT[nginx]} ssl http2;
		server_name bench.test *.bench.test;
		ssl_certificate $CERT;
		ssl_certificate_key $KEY;
		ssl_protocols TLSv1.2 TLSv1.3;

		location / {
			proxy_pass http://origin;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host \$host;
			# What gatehouse and Caddy send by default, so the origin
			# gets the same request from all three.
			proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
			proxy_set_header X-Forwarded-Proto \$scheme;
			proxy_set_header X-Forwarded-Host \$host;
		}
	}
}
EOF
}

# gatehouse_config FILE PORT HOST...: one site per HOST, all with the static
# certificate and the origin as their only upstream.
gatehouse_config() {
	local file=$1 port=$2 host
	shift 2
	{
		cat <<EOF
listen:
  http: "off"
  https: 127.0.0.1:$port
storage: ${GH_STORAGE:-$RUN/gatehouse-storage}
admin: "off"
log:
  level: warn
  access: false
sites:
EOF
		for host in "$@"; do
			printf '  - hosts: [%s]\n    tls: %s\n    routes:\n      - path: /\n        upstreams: [http://127.0.0.1:%s]\n' \
				"$host" "${GH_TLS:-{cert: $CERT, key: $KEY\}}" "$ORIGIN_PORT"
		done
	} >"$file"
}

# ---- starting and measuring proxies --------------------------------------

# start_proxy NAME [CONFIG PORT]: start it, wait until it answers GET /1k
# over TLS, and set PROXY_PID and START_MS (launch until the first 200).
start_proxy() {
	local name=$1 port=${3:-${PORT[$1]}} sni=${4:-bench.test} t0 t1
	port_busy "$port" && die "port $port is already in use"
	t0=$(date +%s%N)
	case $name in
	gatehouse)
		"$BIN/gatehouse" run -config "${2:-$RUN/gatehouse.yaml}" >>"$RUN/gatehouse.log" 2>&1 &
		;;
	caddy)
		HOME=$RUN/caddy XDG_DATA_HOME=$RUN/caddy/data XDG_CONFIG_HOME=$RUN/caddy/config \
			"$BIN/caddy" run --config "${2:-$RUN/Caddyfile}" --adapter caddyfile >>"$RUN/caddy.log" 2>&1 &
		;;
	nginx)
		"$NGINX" -p "$RUN/nginx" -c "$RUN/nginx/nginx.conf" -e "$RUN/nginx/logs/error.log" >>"$RUN/nginx.log" 2>&1 &
		;;
	direct)
		"$BIN/origin" -addr "127.0.0.1:$port" -cert "$CERT" -key "$KEY" >>"$RUN/direct.log" 2>&1 &
		;;
	esac
	PROXY_PID=$!
	PIDS+=("$PROXY_PID")
	if ! "$BIN/probe" -addr "127.0.0.1:$port" -sni "$sni" -path /1k -timeout 60s >/dev/null 2>"$RUN/probe.err"; then
		cat "$RUN/probe.err" >&2
		tail -n 20 "$RUN/$name.log" >&2 || true
		stop_pid "$PROXY_PID"
		return 1
	fi
	t1=$(date +%s%N)
	START_MS=$(((t1 - t0) / 1000000))
}

stop_proxy() { stop_pid "$PROXY_PID"; }

# origin_conns: how many connections the origin has accepted so far.
origin_conns() {
	local n
	n=$( (exec 3<>"/dev/tcp/127.0.0.1/$ORIGIN_PORT" && printf 'GET /_conns HTTP/1.0\r\n\r\n' >&3 && tail -n 1 <&3) 2>/dev/null || true)
	echo "${n:-0}"
}

# cpu_ticks PID: the CPU time (user plus system, in clock ticks) PID and its
# children (nginx's workers) have used so far.
CLK_TCK=$(getconf CLK_TCK)
cpu_ticks() {
	local pid=$1 t=0 p v
	for p in "$pid" $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
		v=$(awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null || true)
		t=$((t + ${v:-0}))
	done
	echo "$t"
}

# record_cpu ROUND CASE PROXY PROXY_TICKS0 ORIGIN_TICKS0 RATE: the CPU the
# proxy and the origin spent per request (case 4: per MiB) during the
# measured run, from their ticks before it and RATE requests per second.
record_cpu() {
	local round=$1 c=$2 p=$3 pt0=$4 ot0=$5 rate=$6 pt1 ot1
	pt1=$(cpu_ticks "$PROXY_PID")
	ot1=$(cpu_ticks "$ORIGIN_PID")
	[[ $rate == - ]] && return
	record "$round" "$c" "$p" cpu "$(per_request "$((pt1 - pt0))" "$rate")" - - 0
	record "$round" "$c" "$p" cpu_origin "$(per_request "$((ot1 - ot0))" "$rate")" - - 0
}

# per_request TICKS RATE: microseconds of CPU per request.
per_request() {
	awk -v t="$1" -v r="$2" -v hz="$CLK_TCK" -v s="$DSEC" 'BEGIN {printf "%.1f", t / hz * 1e6 / (r * s)}'
}

# rss_mib PID: resident memory of PID and its children (nginx's workers), MiB.
rss_mib() {
	local pid=$1 kb=0 p v
	local pids=("$pid")
	for p in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do pids+=("$p"); done
	for p in "${pids[@]}"; do
		v=$(awk '/^VmRSS:/ {print $2}' /proc/"$p"/status 2>/dev/null || true)
		kb=$((kb + ${v:-0}))
	done
	awk -v kb="$kb" 'BEGIN {printf "%.1f", kb / 1024}'
}

# ---- load tools and their output -----------------------------------------

# wrk_run OUT URL CONNS [wrk args...]
wrk_run() {
	local out=$1 url=$2 conns=$3 secs=${WRK_SECS:-$DSEC}
	shift 3
	timeout $((secs + 30)) wrk -t 2 -c "$conns" -d "${secs}s" --timeout 5s --latency -s "$LUA" "$@" "$url" >"$out" 2>&1 || true
}

# to_ms VALUE-WITH-UNIT: wrk's 1.23ms / 456.00us / 1.20s as milliseconds.
to_ms() {
	awk -v v="$1" 'BEGIN {
		if (v ~ /us$/) printf "%.3f", v / 1000
		else if (v ~ /ms$/) printf "%.3f", v + 0
		else if (v ~ /m$/) printf "%.3f", v * 60000
		else if (v ~ /s$/) printf "%.3f", v * 1000
		else print "-" }'
}

# parse_wrk OUT: prints "req/s p50_ms p99_ms errors".
parse_wrk() {
	local out=$1 rps p50 p99 errs
	rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
	p50=$(awk '$1 == "50%" {print $2}' "$out")
	p99=$(awk '$1 == "99%" {print $2}' "$out")
	errs=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(/,/, ""); n += $4 + $6 + $8 + $10} END {print n + 0}' "$out")
	echo "${rps:--} $(to_ms "${p50:-}") $(to_ms "${p99:-}") $errs"
}

# h2load_run OUT LOG URL PORT
h2load_run() {
	local out=$1 lf=$2 url=$3 port=$4 secs=${WRK_SECS:-$DSEC}
	timeout $((secs + 30)) h2load -t 2 -c 32 -m 10 -D "$secs" --connect-to="127.0.0.1:$port" \
		--log-file="$lf" "$url" >"$out" 2>&1 || true
}

# parse_h2load OUT LOG: prints "req/s p50_ms p99_ms errors"; the percentiles
# come from the per-request log (third column: microseconds to the response).
parse_h2load() {
	local out=$1 lf=$2 rps pct errs
	rps=$(awk '/^finished in/ {for (i = 1; i <= NF; i++) if ($(i) ~ /^req\/s/) {v = $(i - 1)}} END {print v}' "$out")
	errs=$(awk '/^requests:/ {n = $10 + $12 + $14} END {print n + 0}' "$out")
	if [[ -s $lf ]]; then
		pct=$(cut -f3 "$lf" | sort -n | awk '{a[NR] = $1} END {
			if (NR == 0) { print "- -"; exit }
			i = int(NR * 0.50 + 0.5); if (i < 1) i = 1
			j = int(NR * 0.99 + 0.5); if (j < 1) j = 1; if (j > NR) j = NR
			printf "%.3f %.3f", a[i] / 1000, a[j] / 1000 }')
	else
		pct="- -"
	fi
	echo "${rps:--} $pct $errs"
}

# parse_handshakes OUT: prints "req/s p50_ms p99_ms errors".
parse_handshakes() {
	awk '/^rps / {
		if ($8 > 0) print $2, $4, $6, $10; else print "-", "-", "-", $10; found = 1 }
		END { if (!found) print "- - - 1" }' "$1"
}

RAW=$RUN/raw.tsv
: >"$RAW"

# record ROUND CASE PROXY METRIC VALUE P50 P99 ERRORS
record() {
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RAW"
}

# ---- the cases -------------------------------------------------------------

# run_case ROUND CASE PROXY
run_case() {
	local round=$1 c=$2 p=$3 port=${PORT[$3]} out="$RUN/r$1-c$2-$3" rps p50 p99 errs i
	local url="https://bench.test:$port"
	if ! start_proxy "$p"; then
		log "round $round case $c $p: did not start; figure not counted"
		record "$round" "$c" "$p" "$([[ $c == 5 ]] && echo rss || echo rps)" - - - 1
		return
	fi
	local r dials0 pt0 ot0
	dials0=$(origin_conns)
	case $c in
	1)
		WRK_SECS=1 wrk_run "$out.warm" "$url/1k" 64
		pt0=$(cpu_ticks "$PROXY_PID") ot0=$(cpu_ticks "$ORIGIN_PID")
		wrk_run "$out.txt" "$url/1k" 64
		read -r rps p50 p99 errs < <(parse_wrk "$out.txt")
		record "$round" 1 "$p" rps "$rps" "$p50" "$p99" "$errs"
		record_cpu "$round" 1 "$p" "$pt0" "$ot0" "$rps"
		r="$rps req/s, p99 $p99 ms"
		;;
	2)
		WRK_SECS=1 h2load_run "$out.warm" /dev/null "$url/1k" "$port"
		pt0=$(cpu_ticks "$PROXY_PID") ot0=$(cpu_ticks "$ORIGIN_PID")
		h2load_run "$out.txt" "$out.log" "$url/1k" "$port"
		read -r rps p50 p99 errs < <(parse_h2load "$out.txt" "$out.log")
		rm -f "$out.log"
		record "$round" 2 "$p" rps "$rps" "$p50" "$p99" "$errs"
		record_cpu "$round" 2 "$p" "$pt0" "$ot0" "$rps"
		r="$rps req/s, p99 $p99 ms"
		;;
	3)
		# Full handshakes from a Go client without a session cache, then
		# wrk with Connection: close, whose OpenSSL resumes TLS 1.3 sessions.
		timeout $((DSEC + 30)) "$BIN/handshakes" -addr "127.0.0.1:$port" -c 32 -d 1s >"$out.warm" 2>&1 || true
		pt0=$(cpu_ticks "$PROXY_PID") ot0=$(cpu_ticks "$ORIGIN_PID")
		timeout $((DSEC + 30)) "$BIN/handshakes" -addr "127.0.0.1:$port" -c 32 -d "${DSEC}s" >"$out.txt" 2>&1 || true
		read -r rps p50 p99 errs < <(parse_handshakes "$out.txt")
		record "$round" 3 "$p" hps "$rps" "$p50" "$p99" "$errs"
		record_cpu "$round" 3 "$p" "$pt0" "$ot0" "$rps"
		wrk_run "$out-resumed.txt" "$url/1k" 32 -H "Connection: close"
		local rrps rp50 rp99 rerrs
		read -r rrps rp50 rp99 rerrs < <(parse_wrk "$out-resumed.txt")
		record "$round" 3 "$p" hps_resumed "$rrps" "$rp50" "$rp99" "$rerrs"
		r="$rps full handshakes/s (p99 $p99 ms), $rrps resumed/s (p99 $rp99 ms)"
		;;
	4)
		WRK_SECS=1 wrk_run "$out.warm" "$url/1m" 16
		pt0=$(cpu_ticks "$PROXY_PID") ot0=$(cpu_ticks "$ORIGIN_PID")
		wrk_run "$out.txt" "$url/1m" 16
		read -r rps p50 p99 errs < <(parse_wrk "$out.txt")
		record_cpu "$round" 4 "$p" "$pt0" "$ot0" "$rps"
		local mbps=-
		[[ $rps != - ]] && mbps=$(awk -v r="$rps" 'BEGIN {printf "%.1f", r * 1048576 / 1e6}')
		record "$round" 4 "$p" mbps "$mbps" "$p50" "$p99" "$errs"
		r="$mbps MB/s, p99 $p99 ms"
		;;
	5)
		local base rss ready
		sleep 1
		base=$(rss_mib "$PROXY_PID")
		"$BIN/idleconns" -addr "127.0.0.1:$port" -sni bench.test -n "$IDLE_CONNS" \
			-hold "$((DSEC + 120))s" >"$out.txt" 2>&1 &
		local client=$!
		PIDS+=("$client")
		for ((i = 0; i < 1200; i++)); do
			grep -q '^ready' "$out.txt" && break
			kill -0 "$client" 2>/dev/null || break
			sleep 0.1
		done
		ready=$(awk '/^ready/ {print $2, $4}' "$out.txt")
		if [[ -n $ready ]]; then
			sleep 2 # let the proxy settle with every connection idle
			rss=$(rss_mib "$PROXY_PID")
		else
			rss=-
		fi
		stop_pid "$client"
		local open failed
		read -r open failed <<<"${ready:-0 $IDLE_CONNS}"
		record "$round" 5 "$p" rss "$rss" - - "$failed"
		record "$round" 5 "$p" rss_base "$base" - - 0
		r="$rss MiB with $open idle connections ($failed failed), $base MiB before"
		;;
	esac
	stop_proxy
	log "round $round case $c $p: $r; $(($(origin_conns) - dials0)) upstream connections opened"
}

# run_case6 ROUND PROXY: gatehouse (or Caddy, for comparison) with a 1-site
# and a $SITES-site config, each started fresh: start-up time (launch until
# the first 200), req/s to the last site, RSS after that load.
run_case6() {
	local round=$1 p=$2 kind cfg host out rps p50 p99 errs rss kinds=(1-site 10k-sites)
	((round % 2)) || kinds=(10k-sites 1-site) # alternate which goes first
	host=site-$((SITES - 1)).bench.test
	for kind in "${kinds[@]}"; do
		case $p in
		gatehouse) cfg=$RUN/gatehouse-$kind.yaml ;;
		caddy) cfg=$RUN/Caddyfile-$kind ;;
		esac
		out=$RUN/r$round-c6-$p-$kind
		if ! start_proxy "$p" "$cfg" "$CASE6_PORT" "$host"; then
			log "round $round case 6 $p $kind: did not start; figure not counted"
			record "$round" 6 "$p-$kind" start - - - 1
			continue
		fi
		WRK_SECS=1 wrk_run "$out.warm" "https://$host:$CASE6_PORT/1k" 64
		wrk_run "$out.txt" "https://$host:$CASE6_PORT/1k" 64
		read -r rps p50 p99 errs < <(parse_wrk "$out.txt")
		rss=$(rss_mib "$PROXY_PID")
		stop_proxy
		record "$round" 6 "$p-$kind" start "$START_MS" - - 0
		record "$round" 6 "$p-$kind" rps "$rps" "$p50" "$p99" "$errs"
		record "$round" 6 "$p-$kind" rss "$rss" - - 0
		log "round $round case 6 $p $kind: start $START_MS ms, $rps req/s, p99 $p99 ms, $rss MiB"
	done
}

# start_etcd: the one-member etcd of case 7 (bench/cmd/etcd), once.
ETCD_PID=
start_etcd() {
	[[ -n $ETCD_PID ]] && return 0
	port_busy "$ETCD_PORT" && die "etcd port $ETCD_PORT is already in use"
	"$BIN/etcd" -dir "$RUN/etcd" -client-port "$ETCD_PORT" -peer-port "$((ETCD_PORT + 1))" >"$RUN/etcd.log" 2>&1 &
	ETCD_PID=$!
	PIDS+=("$ETCD_PID")
	for ((i = 0; i < 300; i++)); do grep -q '^ready' "$RUN/etcd.log" && return 0; sleep 0.1; done
	die "etcd did not start: $(tail -n 5 "$RUN/etcd.log")"
}

# run_case7 ROUND: gatehouse serving bench.test from its local CA, kept in
# file storage and then in etcd storage (or the other way round, by
# round), under case 1's load: etcd must never be on the handshake or
# request path.
run_case7() {
	local round=$1 kind kinds=(file etcd) out rps p50 p99 errs url="https://bench.test:$CASE7_PORT"
	((round % 2)) || kinds=(etcd file)
	for kind in "${kinds[@]}"; do
		out="$RUN/r$round-c7-$kind"
		if ! start_proxy gatehouse "$RUN/gatehouse-$kind.yaml" "$CASE7_PORT"; then
			log "round $round case 7 $kind: did not start; figure not counted"
			record "$round" 7 "gatehouse-$kind" rps - - - 1
			continue
		fi
		WRK_SECS=1 wrk_run "$out.warm" "$url/1k" 64
		wrk_run "$out.txt" "$url/1k" 64
		read -r rps p50 p99 errs < <(parse_wrk "$out.txt")
		record "$round" 7 "gatehouse-$kind" rps "$rps" "$p50" "$p99" "$errs"
		stop_proxy
		log "round $round case 7 $kind storage: $rps req/s, p99 $p99 ms"
	done
}

# run_case8: the fleet issuance benchmark (bench/fleet), every round in
# one go test run: $FLEET_NAMES names by one instance and by three on one
# etcd, with Pebble in-process.
run_case8() {
	local out="$RUN/c8.txt" line single fleet orders
	log "case 8: $FLEET_NAMES names, 1 instance and a fleet of 3, $ROUNDS round(s)"
	if ! (cd "$REPO" && timeout 1800 go test ./bench/fleet -run '^$' -bench FleetIssuance -benchtime "${ROUNDS}x" \
		-timeout 30m -args -fleet.names "$FLEET_NAMES") >"$out" 2>&1; then
		grep -v pebbletest "$out" | tail -n 20 >&2
		log "case 8: failed; figures not counted"
		record 1 8 gatehouse-3-instances issue_s - - - 1
		return
	fi
	line=$(grep '^BenchmarkFleetIssuance' "$out")
	single=$(awk '{for (i = 1; i < NF; i++) if ($(i + 1) == "single-s") print $i}' <<<"$line")
	fleet=$(awk '{for (i = 1; i < NF; i++) if ($(i + 1) == "fleet-s") print $i}' <<<"$line")
	orders=$(awk '{for (i = 1; i < NF; i++) if ($(i + 1) == "fleet-orders") print $i}' <<<"$line")
	record 1 8 gatehouse-1-instance issue_s "$single" - - 0
	record 1 8 gatehouse-3-instances issue_s "$fleet" - - 0
	record 1 8 gatehouse-3-instances extra_orders "$(awk -v o="$orders" -v n="$FLEET_NAMES" 'BEGIN {print o - n}')" - - 0
	log "case 8: 1 instance $single s, 3 instances $fleet s, $orders orders for $FLEET_NAMES names (medians of $ROUNDS)"
}

# caddy_config FILE PORT HOST...: the Caddyfile of case 6, one site block
# per HOST, otherwise as the main one.
caddy_config() {
	local file=$1 port=$2 host
	shift 2
	{
		sed -n '1,/^}$/p' "$RUN/Caddyfile"
		for host in "$@"; do
			printf '\nhttps://%s:%s {\n\ttls %s %s\n\treverse_proxy 127.0.0.1:%s\n}\n' \
				"$host" "$port" "$CERT" "$KEY" "$ORIGIN_PORT"
		done
	} >"$file"
}

# ---- main -------------------------------------------------------------------

install_tools
[[ -n $PROXIES ]] || die "no proxy to measure"

# Case 5 holds IDLE_CONNS connections in the client and the proxy: raise the
# descriptor limit as far as allowed (children inherit it).
need=$((IDLE_CONNS + 1000))
if (($(ulimit -n) < need)); then
	hard=$(ulimit -Hn)
	[[ $hard == unlimited ]] && hard=$need
	ulimit -n "$((hard < need ? hard : need))" || true
fi
if want_case 5 && (($(ulimit -n) < need)); then
	log "warning: open-file limit $(ulimit -n) is below $need; case 5 opens fewer connections"
	IDLE_CONNS=$(($(ulimit -n) - 1000))
fi

write_configs

if want_case 6; then
	hosts=()
	for ((i = 0; i < SITES; i++)); do hosts+=("site-$i.bench.test"); done
	gatehouse_config "$RUN/gatehouse-10k-sites.yaml" "$CASE6_PORT" "${hosts[@]}"
	gatehouse_config "$RUN/gatehouse-1-site.yaml" "$CASE6_PORT" "site-$((SITES - 1)).bench.test"
	caddy_config "$RUN/Caddyfile-10k-sites" "$CASE6_PORT" "${hosts[@]}"
	caddy_config "$RUN/Caddyfile-1-site" "$CASE6_PORT" "site-$((SITES - 1)).bench.test"
fi

if want_case 7; then
	GH_TLS="{issuer: internal}" gatehouse_config "$RUN/gatehouse-file.yaml" "$CASE7_PORT" bench.test
	GH_TLS="{issuer: internal}" GH_STORAGE="{etcd: {endpoints: [http://127.0.0.1:$ETCD_PORT], prefix: /bench/}, cache: $RUN/gatehouse-etcd-cache}" \
		gatehouse_config "$RUN/gatehouse-etcd.yaml" "$CASE7_PORT" bench.test
	start_etcd
fi

port_busy "$ORIGIN_PORT" && die "origin port $ORIGIN_PORT is already in use"
"$BIN/origin" -addr "127.0.0.1:$ORIGIN_PORT" >"$RUN/origin.log" 2>&1 &
ORIGIN_PID=$!
PIDS+=("$ORIGIN_PID")
for ((i = 0; i < 100; i++)); do port_busy "$ORIGIN_PORT" && break; sleep 0.1; done
port_busy "$ORIGIN_PORT" || die "origin did not start: $(cat "$RUN/origin.log")"

IFS=, read -r -a proxy_list <<<"$PROXIES"
IFS=, read -r -a case_list <<<"$CASES"
log "proxies: ${proxy_list[*]}; cases: ${case_list[*]}; $ROUNDS round(s) of $DURATION; work dir $RUN"

for ((round = 1; round <= ROUNDS; round++)); do
	for c in "${case_list[@]}"; do
		case $c in
		[1-5])
			for p in "${proxy_list[@]}"; do run_case "$round" "$c" "$p"; done
			;;
		6)
			for p in "${proxy_list[@]}"; do
				[[ $p == nginx || $p == direct ]] || run_case6 "$round" "$p"
			done
			;;
		7) want gatehouse && run_case7 "$round" ;;
		8) ((round == 1)) && want gatehouse && run_case8 ;;
		*) die "unknown case $c" ;;
		esac
	done
done

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
{
	echo "gatehouse benchmark, $(date -u '+%Y-%m-%d %H:%M UTC'), $(hostname): $(nproc) cores, ${cpu:-unknown CPU}, $(uname -r)"
	echo "gatehouse ${GATEHOUSE_BUILT:-not built}; Caddy $(caddy_version); $("$NGINX" -v 2>&1 | sed 's/^nginx version: //'); wrk $(wrk -v 2>&1 | awk 'NR == 1 {print $2}'); $(h2load --version | awk '{print $2}'); $(go version | awk '{print $3}')"
	echo "medians of $ROUNDS round(s) of $DURATION each, load generator on the same machine; case 6 targets site-$((SITES - 1)) of $SITES"
} >"$RUN/info.txt"

echo
"$BIN/report" -raw "$RAW" -info "$RUN/info.txt" -md "$WORK/results.md"
log "markdown table: $WORK/results.md; raw figures and logs: $RUN"
