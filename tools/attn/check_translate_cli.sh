#!/usr/bin/env bash
# tools/attn/check_translate_cli.sh — `attn translate` as a new user tries it, on a tiny run trained here
# in seconds: absurd options are one-line errors naming the flag, every input line gives one output line
# (empty and invalid UTF-8 ones too, with a warning naming the line), n-best lists, attention pictures,
# the checkpoint fallback said, and an unknown command named.
#
#   tools/attn/check_translate_cli.sh [path/to/attn]
set -euo pipefail
CHECK=check_translate_cli
source "$(dirname "$0")/cli_check_lib.sh" "${1:-}"

expect_error 'unknown command "translat"; the commands are:' translat --beam 4
expect_error -- '--beam (beam_size) must be >= 1, got 0' translate --beam 0
expect_error -- '--beam excludes --greedy' translate --greedy --beam 4
expect_error -- '--length-penalty must be a finite number >= 0, got nan' translate --length-penalty nan
expect_error -- '--length-penalty must be a finite number >= 0, got inf' translate --length-penalty inf
expect_error -- '--length-penalty must be a finite number >= 0, got -1' translate --length-penalty -1
expect_error -- '--batch-size must be >= 1, got 0' translate --batch-size 0
expect_error -- '--batch-size must be >= 1, got -1' translate --batch-size -1
expect_error -- '--max-len-b must be >= 0, got -2' translate --max-len-b -2
expect_error -- '--top-p must be in (0, 1], got 1.5' translate --sample --top-p 1.5
expect_error -- '--sample draws one token at a time' translate --sample --beam 4
expect_error -- '--n-best (n_best) must be in 1..--beam (2), got 3' translate --beam 2 --n-best 3
"$ATTN" translate --help | grep -q 'checkpoint.safetensors' || fail "translate --help does not say when checkpoint.safetensors is used"
"$ATTN" translate --help | grep -q -- '--beam INT=4' || fail "translate --help: beam default is not the demo's 4"

# a tiny word-for-word corpus and a run of a few steps
python3 - "$TMP" <<'PY'
import random, sys
en = "god light earth water day night man king house bread".split()
es = "dios luz tierra agua dia noche hombre rey casa pan".split()
rng = random.Random(7)
for name, n in (("train", 300), ("dev", 20)):
    with open(f"{sys.argv[1]}/{name}.en", "w") as fe, open(f"{sys.argv[1]}/{name}.es", "w") as fs:
        for _ in range(n):
            w = [rng.randrange(10) for _ in range(rng.randint(2, 8))]
            fe.write(" ".join(en[i] for i in w) + "\n")
            fs.write(" ".join(es[i] for i in w) + "\n")
PY
"$ATTN" train-translator --train "$TMP/train" --dev "$TMP/dev" --out "$TMP/run" --vocab-size 48 --d-model 32 --heads 4 \
  --layers 1 --ff 64 --max-steps 20 --eval-every 20 --eval-sentences 5 --warmup 50 --no-progress > "$TMP/train.log" 2>&1 \
  || fail "train-translator: $(tail -5 "$TMP/train.log")"

printf 'god light\n\nking \xff bread\n   \nwater day\n' > "$TMP/in.en"
"$ATTN" translate --model "$TMP/run" --input "$TMP/in.en" --output "$TMP/out.es" --beam 3 2> "$TMP/err"
[ "$(wc -l < "$TMP/out.es")" -eq 5 ] || fail "5 input lines gave $(wc -l < "$TMP/out.es") output lines"
[ -z "$(sed -n 2p "$TMP/out.es")" ] && [ -z "$(sed -n 4p "$TMP/out.es")" ] || fail "empty lines did not give empty lines"
grep -q 'warning: line 3: invalid UTF-8 at byte offset 5' "$TMP/err" || fail "no warning for line 3's invalid UTF-8: $(cat "$TMP/err")"
"$ATTN" translate --model "$TMP/run" --beam 3 --n-best 2 --no-repeat-ngram-size 2 --attention "$TMP/pics" < "$TMP/in.en" > "$TMP/nbest" 2> "$TMP/err"
[ "$(wc -l < "$TMP/nbest")" -eq 5 ] || fail "n-best: 5 input lines gave $(wc -l < "$TMP/nbest") lines"
awk -F'\t' 'NF > 1 && NF != 4 { exit 1 }' "$TMP/nbest" || fail "n-best lines are not score<TAB>text<TAB>score<TAB>text: $(cat "$TMP/nbest")"
[ -f "$TMP/pics/decoder_cross_layer1_mean.png" ] || fail "no per-layer mean attention picture: $(ls "$TMP/pics")"
# a file longer than one batch shows a progress bar on stderr (a plain line when it is not a terminal)
for i in $(seq 1 40); do echo "god light water day"; done > "$TMP/many.en"
"$ATTN" translate --model "$TMP/run" --greedy --batch-size 8 --input "$TMP/many.en" > "$TMP/many.es" 2> "$TMP/err"
[ "$(wc -l < "$TMP/many.es")" -eq 40 ] || fail "40 lines gave $(wc -l < "$TMP/many.es")"
grep -q 'translate.*40/40' "$TMP/err" || fail "no progress bar: $(cat "$TMP/err")"
rm "$TMP/run/best.safetensors"
"$ATTN" translate --model "$TMP/run" --greedy < "$TMP/in.en" > /dev/null 2> "$TMP/err"
grep -q 'note: no best.safetensors' "$TMP/err" || fail "the checkpoint.safetensors fallback is not said: $(cat "$TMP/err")"
sed -i 's/"d_model": 32/"d_model": "32"/' "$TMP/run/config.json"
expect_error '"d_model" must be an integer, got "32"' translate --model "$TMP/run"
echo "check_translate_cli: OK"
