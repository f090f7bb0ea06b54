#!/usr/bin/env python3
"""attn vs PyTorch on the translation recipe: the same data, SentencePiece model, batches, architecture and
hyper-parameters, trained side by side; dev BLEU at the same step counts and at the same training time, and
test BLEU of both final models decoded once, at the end, by the same decoder.

    python bench/compare_translation.py --out runs/compare --time-budget 7200          # the real run (lead)
    python bench/compare_translation.py --out /tmp/cmp --d-model 64 --heads 2 --layers 1 --ff 128 \\
        --max-steps 200 --eval-every 100 --eval-sentences 50 --warmup 200 --force              # smoke test

Default: both concurrently, one thread each, pinned with taskset to different cores (cores 0 and 1), so on
the 2-core machine each side gets the same hardware for the same wall-clock time. --mode sequential runs
attn, then PyTorch, with --threads each (no pinning).

attn side: `attn train-translator --dev <dev prefix>` with every hyper-parameter given explicitly; its
in-loop validation (every --eval-every steps and at the last step: teacher-forced loss on the whole dev
set, greedy BLEU/chrF on --eval-sentences of its pairs) is read from <out>/attn/metrics.jsonl (dev/bleu,
dev/loss, train/seconds = time in training steps only). PyTorch side: bench/torch_translator.py with the
same flags, started as soon as attn has written <out>/attn/spm.model + config.json (it loads that
SentencePiece file: identical token ids and batches), logging the same tags to <out>/torch/metrics.jsonl.

Validation uses the dev books only (data/bible/dev: Mark, Galatians). The test books (data/bible/test:
John, Ephesians) are touched once, after both runs: each side's final weights (attn's
checkpoint.safetensors, PyTorch's final.pt) are decoded on every test pair by the same code,
torch_translator.py --test-checkpoint (greedy, key/value cache, sacreBLEU 13a), so a difference in
test BLEU is a difference in the trained weights, not in decoders. Patience is disabled on both sides.

--time-budget is each process's wall-clock limit as attn defines it (since its start, setup and
validations included); --max-steps a step limit. The dev tables compare BLEU at every validation step both
reached, and at common TRAINING-time budgets (train/seconds: the time in training steps only, validation
excluded; default budget: the smaller of the two final training times; --budgets adds others): for each
side, the last validation whose train/seconds is within the budget. Finally --check runs
torch_translator.py --check-attn-checkpoint on attn's final checkpoint: the same weights validated by the
PyTorch code must give attn's logged dev loss/BLEU (model code, decoding rule and BLEU implementation agree).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def read_metrics(path):
    rows = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    rows.append(json.loads(line))
    evals = [r for r in rows if "dev/bleu" in r]
    train = [r for r in rows if "train/loss" in r]
    return evals, train


def at_budget(evals, budget):
    ok = [e for e in evals if e["train/seconds"] <= budget + 1e-9]
    return ok[-1] if ok else None


def fmt(x, f="{:.2f}"):
    return "-" if x is None else f.format(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/compare", help="run directory (<out>/attn, <out>/torch)")
    ap.add_argument("--force", action="store_true", help="delete an existing --out first (else refused: attn would resume)")
    ap.add_argument("--attn", default=os.path.join(ROOT, "build", "tools", "attn", "attn"), help="the attn CLI")
    ap.add_argument("--python", default=sys.executable, help="interpreter with torch, sentencepiece, sacrebleu")
    ap.add_argument("--mode", choices=["concurrent", "sequential"], default="concurrent")
    ap.add_argument("--threads", type=int, default=1, help="threads per side")
    ap.add_argument("--cores", default="0,1", help="concurrent mode: taskset core lists for attn;torch, e.g. "
                                                     "'0,1' or '0-1;2-3' (';' separates when lists have commas)")
    ap.add_argument("--spm", help="reuse this SentencePiece model (copied to <out>/attn/spm.model; "
                                  "default: attn trains it, as train-translator does)")
    ap.add_argument("--train", default="data/bible/train")
    ap.add_argument("--dev", "--eval", dest="dev", default="data/bible/dev",
                    help="validation prefix (attn's --dev; the dev books, never the test books)")
    ap.add_argument("--test", default="data/bible/test",
                    help="test prefix, decoded once at the end for both final models ('' to skip)")
    ap.add_argument("--test-sentences", type=int, default=0, help="test pairs decoded (0: all)")
    ap.add_argument("--src", default="en")
    ap.add_argument("--tgt", default="es")
    # the recipe (train-translator's defaults), passed explicitly to both sides
    ap.add_argument("--vocab-size", type=int, default=8000)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--ff", type=int, default=1024)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--max-tokens", type=int, default=4096)
    ap.add_argument("--max-len", type=int, default=128)
    ap.add_argument("--lr-factor", type=float, default=1.0)
    ap.add_argument("--warmup", type=int, default=4000)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--eval-sentences", type=int, default=300)
    ap.add_argument("--max-steps", type=int, default=0, help="0: no limit")
    ap.add_argument("--time-budget", type=float, default=0, help="seconds per side (0: no limit)")
    ap.add_argument("--budgets", default="", help="extra training-time budgets (s) for the table, comma separated")
    ap.add_argument("--no-check", dest="check", action="store_false",
                    help="skip validating attn's final checkpoint with the PyTorch code")
    ap.add_argument("--report-only", action="store_true",
                    help="no training: print the table of an existing --out (give the same recipe flags for --check)")
    a = ap.parse_args()
    if a.max_steps <= 0 and a.time_budget <= 0 and not a.report_only:
        ap.error("give --max-steps and/or --time-budget")
    if a.test and os.path.abspath(a.test) == os.path.abspath(a.dev):
        ap.error(f"--dev and --test are the same set ({a.dev}): validation must not see the test books")

    out = os.path.abspath(a.out)
    attn_dir, torch_dir = os.path.join(out, "attn"), os.path.join(out, "torch")
    if a.report_only:
        pass
    elif os.path.exists(out):
        if not a.force:
            ap.error(f"{out} exists (attn would resume from it); use --force to delete it or another --out")
        shutil.rmtree(out)
    if not a.report_only:
        os.makedirs(attn_dir)
        os.makedirs(torch_dir)
    if a.spm and not a.report_only:
        shutil.copy(a.spm, os.path.join(attn_dir, "spm.model"))

    recipe = ["--d-model", a.d_model, "--heads", a.heads, "--layers", a.layers, "--ff", a.ff, "--dropout", a.dropout,
              "--max-tokens", a.max_tokens, "--max-len", a.max_len, "--lr-factor", a.lr_factor, "--warmup", a.warmup,
              "--label-smoothing", a.label_smoothing, "--clip", a.clip, "--seed", a.seed, "--eval-every", a.eval_every,
              "--eval-sentences", a.eval_sentences, "--max-steps", a.max_steps, "--time-budget", a.time_budget,
              "--patience", 1 << 30, "--train", a.train, "--dev", a.dev, "--src", a.src, "--tgt", a.tgt]
    recipe = [str(x) for x in recipe]
    # float32 on both sides: attn's default precision ("auto") is bf16 on a CPU with AVX512_BF16 or AMX, and
    # the PyTorch side trains in float32
    attn_cmd = [a.attn, "train-translator", "--out", attn_dir, "--vocab-size", str(a.vocab_size), "--no-progress",
                "--precision", "fp32"] + recipe
    torch_cmd = [a.python, os.path.join(HERE, "torch_translator.py"), "--spm", os.path.join(attn_dir, "spm.model"),
                 "--out", torch_dir, "--threads", str(a.threads)] + recipe
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))
    if a.mode == "concurrent":
        cores = a.cores.split(";") if ";" in a.cores else a.cores.split(",")
        if len(cores) != 2:
            ap.error("--cores: two core lists, for attn and for torch")
        attn_cmd = ["taskset", "-c", cores[0]] + attn_cmd
        torch_cmd = ["taskset", "-c", cores[1]] + torch_cmd
    if not a.report_only:
        run_both(a, out, attn_dir, torch_dir, attn_cmd, torch_cmd, env)

    report(a, out, attn_dir, torch_dir, recipe, env)
    return 0


def run_both(a, out, attn_dir, torch_dir, attn_cmd, torch_cmd, env):
    with open(os.path.join(out, "commands.json"), "w") as f:
        json.dump({"attn": attn_cmd, "torch": torch_cmd, "mode": a.mode, "threads": a.threads}, f, indent=1)
    print("attn:  " + " ".join(attn_cmd), file=sys.stderr)
    print("torch: " + " ".join(torch_cmd), file=sys.stderr)

    def start(cmd, d):
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(os.path.join(d, "stdout.json"), "w"),
                                stderr=open(os.path.join(d, "stderr.log"), "w"))

    t0 = time.time()
    pa = start(attn_cmd, attn_dir)
    if a.mode == "sequential":
        if pa.wait() != 0:
            sys.exit(f"attn failed ({pa.returncode}); see {attn_dir}/stderr.log")
        pt = start(torch_cmd, torch_dir)
    else:
        # the PyTorch side needs attn's SentencePiece model: config.json is written once spm.model is complete
        while not os.path.exists(os.path.join(attn_dir, "config.json")):
            if pa.poll() is not None:
                sys.exit(f"attn exited ({pa.returncode}) before writing its SentencePiece model; see {attn_dir}/stderr.log")
            time.sleep(0.5)
        pt = start(torch_cmd, torch_dir)
    rc_t, rc_a = pt.wait(), pa.wait()
    print(f"finished in {time.time() - t0:.0f} s (attn rc {rc_a}, torch rc {rc_t})", file=sys.stderr)
    if rc_a != 0 or rc_t != 0:
        sys.exit(f"a side failed; see {attn_dir}/stderr.log and {torch_dir}/stderr.log")


def report(a, out, attn_dir, torch_dir, recipe, env):
    ea, _ = read_metrics(os.path.join(attn_dir, "metrics.jsonl"))
    et, _ = read_metrics(os.path.join(torch_dir, "metrics.jsonl"))
    ra = json.loads(open(os.path.join(attn_dir, "stdout.json")).read().strip().splitlines()[-1])
    rt = json.loads(open(os.path.join(torch_dir, "stdout.json")).read().strip().splitlines()[-1])
    summary = {"attn": {"steps": ra["steps"], "train_seconds": ea[-1]["train/seconds"] if ea else None,
                        "seconds": ra["seconds"], "final_bleu": ea[-1]["dev/bleu"] if ea else None},
               "torch": {"steps": rt["steps"], "train_seconds": rt["train_seconds"], "seconds": rt["seconds"],
                         "final_bleu": et[-1]["dev/bleu"] if et else None, "parameters": rt["parameters"]}}

    lines = []
    p = lines.append
    p(f"# attn vs PyTorch translation recipe ({a.mode}, {a.threads} thread(s) each); dev set {a.dev} "
      f"({a.eval_sentences} pairs for BLEU), test set {a.test or '-'}; greedy decoding, sacreBLEU 13a")
    p("")
    p("| side | steps | training s | ms per step (training) | total s | final BLEU | final dev loss |")
    p("|---|---:|---:|---:|---:|---:|---:|")
    for name, ev, r in (("attn", ea, ra), ("pytorch", et, rt)):
        ts = ev[-1]["train/seconds"] if ev else None
        p(f"| {name} | {r['steps']} | {fmt(ts, '{:.0f}')} | {fmt(1000 * ts / r['steps'] if ts and r['steps'] else None, '{:.0f}')} | "
          f"{r['seconds']:.0f} | {fmt(ev[-1]['dev/bleu'] if ev else None)} | {fmt(ev[-1]['dev/loss'] if ev else None, '{:.3f}')} |")
    p("")
    p("Dev BLEU at the same step count:")
    p("")
    p("| step | attn BLEU | PyTorch BLEU | attn − PyTorch | attn dev loss | PyTorch dev loss | attn training s | PyTorch training s |")
    p("|---:|---:|---:|---:|---:|---:|---:|---:|")
    bt = {e["step"]: e for e in et}
    common = []
    for e in ea:
        o = bt.get(e["step"])
        if o is None:
            continue
        common.append({"step": e["step"], "attn": e, "torch": o})
        p(f"| {e['step']} | {e['dev/bleu']:.2f} | {o['dev/bleu']:.2f} | {e['dev/bleu'] - o['dev/bleu']:+.2f} | "
          f"{e['dev/loss']:.3f} | {o['dev/loss']:.3f} | {e['train/seconds']:.0f} | {o['train/seconds']:.0f} |")
    p("")
    budgets = []
    if ea and et:
        budgets.append(min(ea[-1]["train/seconds"], et[-1]["train/seconds"]))
    budgets += [float(x) for x in a.budgets.split(",") if x.strip()]
    p("Dev BLEU at the same training time (last validation within the budget; training time = time in training "
      "steps only, setup and validation excluded):")
    p("")
    p("| training-time budget (s) | attn step | attn BLEU | PyTorch step | PyTorch BLEU | attn − PyTorch |")
    p("|---:|---:|---:|---:|---:|---:|")
    at_b = []
    for b in budgets:
        x, y = at_budget(ea, b), at_budget(et, b)
        at_b.append({"budget_s": b, "attn": x, "torch": y})
        p(f"| {b:.0f} | {x['step'] if x else '-'} | {fmt(x['dev/bleu'] if x else None)} | {y['step'] if y else '-'} | "
          f"{fmt(y['dev/bleu'] if y else None)} | "
          f"{fmt(x['dev/bleu'] - y['dev/bleu'] if x and y else None, '{:+.2f}')} |")

    check = None
    if a.check and ea:
        cmd = [a.python, os.path.join(HERE, "torch_translator.py"), "--spm", os.path.join(attn_dir, "spm.model"),
               "--out", os.path.join(out, "check"), "--check-attn-checkpoint",
               os.path.join(attn_dir, "checkpoint.safetensors"), "--threads", str(a.threads)] + recipe
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        if r.returncode == 0:
            check = json.loads(r.stdout.strip().splitlines()[-1])
            ref = ea[-1]
            p("")
            p(f"Cross-check: attn's final checkpoint (step {check['step']}) validated by the PyTorch code: "
              f"BLEU {check['dev/bleu']:.4f} (attn logged {ref['dev/bleu']:.4f}), dev loss {check['dev/loss']:.5f} "
              f"(attn {ref['dev/loss']:.5f}), chrF {check['dev/chrf']:.4f} (attn {ref['dev/chrf']:.4f}).")
        else:
            p("")
            p(f"Cross-check failed ({r.returncode}): {r.stderr.strip()[-1500:]}")

    test = test_table(a, out, attn_dir, torch_dir, recipe, env, p) if a.test else None

    text = "\n".join(lines) + "\n"
    print(text)
    with open(os.path.join(out, "comparison.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out, "comparison.json"), "w") as f:
        json.dump({"summary": summary, "common_steps": common, "budgets": at_b, "check": check, "test": test,
                   "attn_result": ra, "torch_result": rt}, f, indent=1)


def test_table(a, out, attn_dir, torch_dir, recipe, env, p):
    """Decodes the test set once per side's final weights with the same code (torch_translator.py
    --test-checkpoint) and adds the table; returns {side: scores}."""
    recipe = list(recipe)
    recipe[recipe.index("--dev") + 1] = a.test
    recipe[recipe.index("--eval-sentences") + 1] = str(a.test_sentences)
    p("")
    p(f"Test BLEU/chrF ({a.test}, {'every pair' if a.test_sentences <= 0 else f'{a.test_sentences} pairs evenly spaced over it'}; "
      "loss on every pair), decoded once after training, both final models by the same decoder "
      "(torch_translator.py --test-checkpoint):")
    p("")
    p("| side | step | training s | test BLEU | test chrF | test loss |")
    p("|---|---:|---:|---:|---:|---:|")
    scores = {}
    for side, ckpt, d in (("attn", os.path.join(attn_dir, "checkpoint.safetensors"), attn_dir),
                          ("pytorch", os.path.join(torch_dir, "final.pt"), torch_dir)):
        cmd = [a.python, os.path.join(HERE, "torch_translator.py"), "--spm", os.path.join(attn_dir, "spm.model"),
               "--out", os.path.join(out, "test-" + side), "--test-checkpoint", ckpt, "--threads", str(a.threads)]
        r = subprocess.run(cmd + recipe, cwd=ROOT, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            p(f"| {side} | - | - | failed ({r.returncode}): {r.stderr.strip()[-300:]} | | |")
            continue
        s = json.loads(r.stdout.strip().splitlines()[-1])
        ev, _ = read_metrics(os.path.join(d, "metrics.jsonl"))
        s["train_seconds"] = ev[-1]["train/seconds"] if ev else None
        scores[side] = s
        p(f"| {side} | {s['step']} | {fmt(s['train_seconds'], '{:.0f}')} | {s['dev/bleu']:.2f} | {s['dev/chrf']:.2f} | "
          f"{s['dev/loss']:.3f} |")
    return scores


if __name__ == "__main__":
    sys.exit(main())
