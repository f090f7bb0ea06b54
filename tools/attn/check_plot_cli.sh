#!/usr/bin/env bash
# tools/attn/check_plot_cli.sh — `attn plot`: two runs' metrics.jsonl (one given as a run directory, one
# resumed with a repeated step) drawn as a PNG with two panels; malformed input is a one-line error
# naming the file and line, the missing metric or the bad LABEL=PATH.
#
#   tools/attn/check_plot_cli.sh [path/to/attn]
set -euo pipefail
CHECK=check_plot_cli
source "$(dirname "$0")/cli_check_lib.sh" "${1:-}"

mkdir -p "$TMP/run_a"
cat > "$TMP/run_a/metrics.jsonl" <<'JSON'
{"step":50,"wall_time":1.0,"train/loss":2.9,"train/lr":0.002}
{"step":100,"wall_time":2.0,"valid/loss":2.1,"train/seconds":10.0}
{"step":200,"wall_time":3.0,"valid/loss":1.8,"train/seconds":20.0}
JSON
cat > "$TMP/b.jsonl" <<'JSON'
{"step": 100, "wall_time": 1.0, "valid/loss": 2.2, "train/seconds": 8.0}

{"step": 100, "wall_time": 5.0, "valid/loss": 2.25, "train/seconds": 8.0}
{"step": 200, "wall_time": 6.0, "valid/loss": null, "train/seconds": 16.0}
JSON
"$ATTN" plot --out "$TMP/curves.png" --tag valid/loss --tag train/seconds "a=$TMP/run_a" "b=$TMP/b.jsonl" > "$TMP/out"
grep -qF "$TMP/curves.png" "$TMP/out" || fail "the PNG's path is not printed"
[ "$(head -c 8 "$TMP/curves.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] || fail "not a PNG"
# two panels of the default 560 pixels side by side: the PNG's width (big-endian at byte 16) is 1120
[ "$(od -An -j16 -N4 -tu1 "$TMP/curves.png" | tr -s ' ' | sed 's/^ //')" = "0 0 4 96" ] || fail "not two panels wide"

expect_error "has no \"train/loss\"" plot --out "$TMP/x.png" --tag train/loss "b=$TMP/b.jsonl"
expect_error 'expected LABEL=PATH, got "nolabel"' plot --out "$TMP/x.png" nolabel
expect_error 'expected LABEL=PATH, got "=x"' plot --out "$TMP/x.png" "=x"
expect_error "cannot open $TMP/missing.jsonl" plot --out "$TMP/x.png" "m=$TMP/missing.jsonl"
printf '{"step":1,"valid/loss":1}\n{"valid/loss":2}\n' > "$TMP/bad.jsonl"
expect_error "$TMP/bad.jsonl:2: not a metrics line" plot --out "$TMP/x.png" "bad=$TMP/bad.jsonl"
printf 'not json\n' > "$TMP/bad.jsonl"
expect_error "$TMP/bad.jsonl:1: not a metrics line" plot --out "$TMP/x.png" "bad=$TMP/bad.jsonl"
[ ! -e "$TMP/x.png" ] || fail "a failed plot left a PNG"
echo "check_plot_cli: OK"
