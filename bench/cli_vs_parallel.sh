#!/bin/sh
# parafork pipe and run against GNU parallel --pipe / --pipepart / plain and the serial filter.
#
#   bench/cli_vs_parallel.sh [path/to/parafork] [runs]
#
# Generates 2,000,000 random lines (about 63 MB), checks that every parallel run gives the
# serial output, then times (hyperfine if installed, else a date loop):
#   awk '{print length($0)}'   serial | parafork pipe -j2 --block 1M -k | parafork pipe -a (parts by
#                              offset) | parallel --pipe | --pipepart
#   10,000 tiny jobs           parafork run -j2 -- true ::: $(seq 10000) | the same with GNU parallel
#   gzip -9 (CPU-heavy)        serial | parafork pipe -j2 --block 1M | two serial gzips on halves
# The last is the machine's own ceiling for two independent processes (shared caches, a busy
# host): parafork's gzip speedup is to be read against it, not against a flat 2x.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
pf=${1:-$here/../build/tools/parafork}
runs=${2:-5}
pf=$(cd "$(dirname "$pf")" && pwd)/$(basename "$pf")
[ -x "$pf" ] || { echo "no parafork binary at $pf (build target parafork_cli)" >&2; exit 1; }
work=$(mktemp -d /tmp/parafork-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
data=$work/lines.txt

python3 - "$data" <<'PY'
import base64, random, sys
random.seed(1)
raw = base64.b64encode(random.randbytes(48_000_000)).decode()
pos, out = 0, []
for _ in range(2_000_000):
    n = random.randint(0, 62)
    out.append(raw[pos:pos + n]); pos += n
open(sys.argv[1], "w").write("\n".join(out) + "\n")
PY
echo "input: $(wc -l < "$data") lines, $(wc -c < "$data") bytes; $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg)"

# The awk program lives in a file so the same command line works unquoted everywhere.
echo '{print length($0)}' > "$work/len.awk"
awk_cmd="awk -f $work/len.awk"
have_parallel=no
command -v parallel > /dev/null 2>&1 && have_parallel=yes

# Correctness first: every way must print exactly what serial awk prints.
awk '{print length($0)}' < "$data" > "$work/serial.out"
"$pf" pipe -j2 --block 1M -k -- $awk_cmd < "$data" > "$work/pf.out"
cmp "$work/serial.out" "$work/pf.out"
"$pf" pipe -j2 --block 1M -k -a "$data" -- $awk_cmd | cmp - "$work/serial.out"
"$pf" pipe -j2 --block 1M -- gzip -9 < "$data" | gzip -dc | cmp - "$data"
if [ $have_parallel = yes ]; then
    parallel --pipe --block 1M -k "$awk_cmd" < "$data" | cmp - "$work/serial.out"
    parallel --pipepart -a "$data" --block 1M -k "$awk_cmd" | cmp - "$work/serial.out"
fi
echo "outputs identical to the serial run"

set -- \
    "serial awk" "$awk_cmd < $data > /dev/null" \
    "parafork pipe awk" "$pf pipe -j2 --block 1M -k -- $awk_cmd < $data > /dev/null" \
    "parafork pipe -a awk" "$pf pipe -j2 --block 1M -k -a $data -- $awk_cmd > /dev/null" \
    "parafork run 10000 true" "$pf run -j2 -- true ::: \$(seq 10000)"
if [ $have_parallel = yes ]; then
    set -- "$@" \
        "parallel --pipe awk" "parallel --pipe --block 1M -k $awk_cmd < $data > /dev/null" \
        "parallel --pipepart awk" "parallel --pipepart -a $data --block 1M -k $awk_cmd > /dev/null" \
        "parallel 10000 true" "parallel --will-cite -j2 true ::: \$(seq 10000)"
fi
head -n 1000000 "$data" > "$work/half1.txt"
tail -n +1000001 "$data" > "$work/half2.txt"
set -- "$@" \
    "serial gzip -9" "gzip -9 < $data > /dev/null" \
    "parafork pipe gzip -9" "$pf pipe -j2 --block 1M -k -- gzip -9 < $data > /dev/null" \
    "2 gzip -9 on halves" "gzip -9 < $work/half1.txt > /dev/null & gzip -9 < $work/half2.txt > /dev/null; wait"

if command -v hyperfine > /dev/null 2>&1; then
    while [ $# -gt 0 ]; do
        hyperfine --warmup 1 --runs "$runs" --style basic -n "$1" "$2" 2>&1 | grep -E "^Benchmark|Time \(mean" || true
        shift 2
    done
else
    while [ $# -gt 0 ]; do
        best=""
        i=0
        while [ $i -lt "$runs" ]; do
            t0=$(date +%s.%N); sh -c "$2"; t1=$(date +%s.%N)
            t=$(echo "$t1 - $t0" | bc)
            if [ -z "$best" ] || [ "$(echo "$t < $best" | bc)" = 1 ]; then best=$t; fi
            i=$((i + 1))
        done
        printf '%-26s best of %s: %s s\n' "$1" "$runs" "$best"
        shift 2
    done
fi
