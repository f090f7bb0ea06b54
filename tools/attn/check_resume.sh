#!/usr/bin/env bash
# tools/attn/check_resume.sh — CLI-level resume check: `attn train` interrupted (--stop-after-steps) and
# continued with --resume must print the same final numbers as an uninterrupted run, bit for bit.
# Uses 1,200 training / 300 test images, the MLP with dropout and one thread (ctest runs tests side by
# side on 2 cores), so it takes seconds.
#
#   tools/attn/check_resume.sh [path/to/attn] [data_dir]
set -euo pipefail
ATTN=${1:-build/tools/attn/attn}
DATA=${2:-/usr/share/datasets/fashion-mnist}
if [ ! -d "$DATA" ]; then echo "check_resume: SKIP (no Fashion-MNIST in $DATA)"; exit 0; fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
COMMON=(train --model mlp --epochs 3 --dropout 0.2 --limit-train 1200 --limit-test 300 --batch-size 64
        --checkpoint-every 5 --seed 3 --threads 1 --data-dir "$DATA" --no-progress)

"$ATTN" "${COMMON[@]}" --out "$TMP/full" > "$TMP/full.log"
# 19 steps per epoch: stop inside epoch 2 (last checkpoint at step 25), then again inside epoch 3 (at 45).
"$ATTN" "${COMMON[@]}" --out "$TMP/part" --stop-after-steps 27 > "$TMP/part1.log"
"$ATTN" "${COMMON[@]}" --out "$TMP/part" --resume --stop-after-steps 47 > "$TMP/part2.log"
"$ATTN" "${COMMON[@]}" --out "$TMP/part" --resume > "$TMP/part3.log"

python3 - "$TMP/full.log" "$TMP/part3.log" <<'EOF'
import json, sys
full = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
part = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
keys = ["test_accuracy", "test_loss", "train_loss", "train_accuracy", "epochs", "steps"]
bad = [k for k in keys if full[k] != part[k]]
assert part["resumed"] and part["finished"], part
if bad:
    print("check_resume: FAIL", {k: (full[k], part[k]) for k in bad})
    sys.exit(1)
print("check_resume: OK", {k: full[k] for k in keys})
EOF
