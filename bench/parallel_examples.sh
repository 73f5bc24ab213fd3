#!/bin/bash
# How many of GNU parallel's own documented examples give the same output with parafork in its
# place: each one-line example of the man pages parallel_tutorial, parallel_examples and
# parallel that runs locally and changes nothing outside its directory runs twice, with GNU
# parallel and with parafork invoked as `parallel` (a symlink first on PATH), each in a fresh
# directory holding the tutorial's input files, 10 s at most. Same stdout and exit status:
# same; same lines in another order: same but order (jobs run in parallel: neither is wrong).
#
#   bench/parallel_examples.sh [path/to/parafork] [-v]
set -u
here=$(cd "$(dirname "$0")" && pwd)
pf=${1:-$here/../build/dev/tools/parafork}
pf=$(cd "$(dirname "$pf")" && pwd)/$(basename "$pf")
verbose=${2:-}
[ -x "$pf" ] || { echo "no parafork binary at $pf" >&2; exit 1; }
command -v parallel > /dev/null || { echo "GNU parallel is not installed" >&2; exit 1; }
work=$(mktemp -d /tmp/parafork-examples.XXXXXX)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
mkdir "$work/bin" "$work/input"
ln -s "$pf" "$work/bin/parallel"
gnu_dir=$(dirname "$(command -v parallel)")

pages="$work/pages.txt"
for m in parallel_tutorial parallel_examples parallel; do man "$m" 2>/dev/null | col -b; done > "$pages"
# The tutorial's input files, made as it says.
(cd "$work/input" &&
 grep -E '^\s+(parallel -k echo|perl -e) .*> [a-z0-9_.-]+$' "$pages" | sed 's/^\s*//' | sort -u |
     while read -r prep; do PATH=$gnu_dir:$PATH sh -c "$prep" > /dev/null 2>&1; done)
echo "input files: $(ls "$work/input" | tr '\n' ' ')"

# One-line examples that start with `parallel` or feed it through a pipe; remote hosts,
# deleting or moving files, network, terminals, -j 200 and more (GNU parallel's jobs
# outlive the timeout in groups of their own) and the like are left out.
grep -E '^\s+((seq|cat|echo|printf|ls|find \.|perl -e) [^|]*\| *)?parallel ' "$pages" | sed 's/^\s*//' |
    grep -vE '\\$|ssh|-S |--sshlogin|--slf|--trc|--transfer|--return|--basefile|--cleanup|\brm\b|\bmv\b|wget|curl|sudo|--sql|--tmux|--fifo|--semaphore|\bsem\b|--shebang|/dev/tty|--filter-hosts|--nonall|--onall|--record-env|env_parallel|--embed|--citation|--bibtex|--fg|--bg|firefox|niceload|\bkill\b|chmod|--interactive|-p |--memfree|--load|--noswap|--limit|--ungroup|-u |--latest-line|--ll|mysql|\bcd\b|> */|>> */|--ctrl-c|--termseq|--plus|--workdir|--wd|-j *0\b|--jobs 0|-j *[2-9][0-9]{2,}|sleep' |
    grep -vE '\.\.\.|\[options\]|\[command' | sort -u > "$work/examples.txt"

same=0 unordered=0 differ=0 total=0
run_one() {  # $1: bin dir first on PATH, $2: output file; the example is $line
    local dir
    dir=$(mktemp -d "$work/run.XXXXXX")
    cp -al "$work/input/." "$dir/"
    (cd "$dir" && PATH=$1:$PATH timeout -k 1 10 sh -c "$line" < /dev/null > "$2" 2> /dev/null; echo "$?" >> "$2.status")
    rm -rf "$dir"
}
while IFS= read -r line; do
    total=$((total + 1))
    rm -f "$work/g" "$work/o" "$work/g.status" "$work/o.status"
    run_one "$gnu_dir" "$work/g"
    run_one "$work/bin" "$work/o"
    if cmp -s "$work/g" "$work/o" && cmp -s "$work/g.status" "$work/o.status"; then
        same=$((same + 1)); verdict=same
    elif cmp -s <(sort "$work/g") <(sort "$work/o") && cmp -s "$work/g.status" "$work/o.status"; then
        unordered=$((unordered + 1)); verdict=order
    else
        differ=$((differ + 1)); verdict=DIFF
    fi
    [ -n "$verbose" ] && printf '%-5s %s\n' "$verdict" "$line"
done < "$work/examples.txt"
echo "examples: $total; same output and status: $same; same but in another order: $unordered; different: $differ"
echo "same (in any order): $(( (same + unordered) * 100 / total )) in 100"
