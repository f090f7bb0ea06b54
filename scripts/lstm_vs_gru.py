#!/usr/bin/env python3
"""The lecture's "LSTM vs GRU" slide as a measured experiment (docs/recurrent.md): char LMs on the Austen corpus.

    python3 scripts/lstm_vs_gru.py --attn build/tools/attn/attn --data-dir data/austen --out runs/lstm-vs-gru \
        --steps 2000 --png docs/lstm_vs_gru.png

Trains LSTM, GRU and the plain RNN (tanh) of the same shape (Embedding(V -> 128), 1 layer, hidden 128 by
default, Linear(128 -> V)) with `attn train-lm`, each on all of train.txt and on its first 10 %
(--train-fraction 0.1), one run at a time for the same number of steps (default recipe otherwise:
batch 32 x 64 characters, Adam 2e-3, clipping 1.0), evaluating the held-out loss every --eval-every
steps. Prints (and writes to <out>/summary.md) a markdown table: parameters, seconds per 1,000 steps and
per epoch (training wall time only, from metrics.jsonl), the run's CPU seconds, best held-out loss on
valid.txt (end of Northanger Abbey) and the test loss on Persuasion with the best weights; draws the
valid-loss curves of all runs with `attn plot` when --png is given. A run whose directory already holds
result.json is not trained again (delete it to redo).
"""
import argparse
import json
import os
import resource
import subprocess
import sys

CELLS = ["lstm", "gru", "rnn"]


def run(cmd):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout


def train(a, cell, fraction, run_dir):
    result_path = os.path.join(run_dir, "result.json")
    if os.path.exists(result_path):
        with open(result_path, encoding="utf-8") as f:
            return json.load(f)
    cmd = [a.attn, "train-lm", "--cell", cell, "--data-dir", a.data_dir, "--out", run_dir, "--no-resume",
           "--embedding", str(a.embedding), "--layers", str(a.layers), "--hidden", str(a.hidden),
           "--max-steps", str(a.steps), "--eval-every", str(a.eval_every),
           "--log-every", str(a.eval_every), "--threads", str(a.threads), "--seed", str(a.seed), "--no-progress"]
    if fraction != 1:
        cmd += ["--train-fraction", str(fraction)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if a.chunk_seconds > 0:
        # invocations of at most chunk_seconds, each resuming the last (train-lm resumes bit-identically),
        # then one that only scores the test set: on a crowded host short processes get their CPU share
        first, steps = True, 0
        while steps < a.steps:
            chunk = [c for c in cmd if first or c != "--no-resume"] + ["--time-budget", str(a.chunk_seconds), "--no-test"]
            steps = json.loads(run(chunk).strip().splitlines()[-1])["steps"]
            first = False
        cmd = [c for c in cmd if c != "--no-resume"]
    out = run(cmd)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = json.loads(out.strip().splitlines()[-1])
    # CPU time of the whole run (evaluations and the test loss included): steadier than wall time on a busy host
    result["cpu_seconds"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return result


def train_seconds(run_dir):
    """Training seconds (evaluations excluded) at the last step of metrics.jsonl."""
    last = None
    with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row.get("train/seconds") is not None:
                last = row
    return last["step"], last["train/seconds"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--attn", default="build/tools/attn/attn")
    p.add_argument("--data-dir", default="data/austen")
    p.add_argument("--out", default="runs/lstm-vs-gru")
    p.add_argument("--png", default="", help="draw the valid-loss curves of all runs with `attn plot` into this PNG")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--embedding", type=int, default=128)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--fractions", type=float, nargs="+", default=[1.0, 0.1])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--chunk-seconds", type=float, default=0,
                   help="train in resumed invocations of at most this many seconds (0: one invocation)")
    p.add_argument("--batch-size", type=int, default=32, help="train-lm's default; for the steps-per-epoch column")
    p.add_argument("--seq-len", type=int, default=64, help="train-lm's default; for the steps-per-epoch column")
    a = p.parse_args()
    with open(os.path.join(a.data_dir, "train.txt"), encoding="utf-8") as f:
        chars = len(f.read())  # code points, as train-lm counts them
    rows, series = [], []
    for fraction in a.fractions:
        n = min(chars, max(2, int(chars * fraction)))
        steps_per_epoch = ((n - 1) // a.batch_size) // a.seq_len
        for cell in CELLS:
            label = f"{cell} {fraction:.0%}"
            run_dir = os.path.join(a.out, f"{cell}-{fraction:g}")
            r = train(a, cell, fraction, run_dir)
            step, seconds = train_seconds(run_dir)
            per_step = seconds / step
            rows.append(f"| {cell} | {fraction:.0%} | {r['parameters']:,} | {per_step * 1000:.0f} | "
                        f"{per_step * steps_per_epoch:.0f} ({steps_per_epoch} steps) | {r['steps'] / steps_per_epoch:.2f} | "
                        f"{r.get('cpu_seconds', float('nan')):.0f} | {r['best_valid_loss']:.3f} | {r['test_loss']:.3f} |")
            series.append(f"{label}={run_dir}")
    table = ["| cell | training data | parameters | s / 1,000 steps | s / epoch | epochs run | CPU s (whole run) | "
             "best valid loss | test loss (Persuasion) |", "|---|---|---|---|---|---|---|---|---|"] + rows
    text = "\n".join(table) + "\n"
    print(text)
    with open(os.path.join(a.out, "summary.md"), "w", encoding="utf-8") as f:
        f.write(text)
    if a.png:
        subprocess.run([a.attn, "plot", "--out", a.png, "--tag", "valid/loss", "--width", "720", "--height", "420"] + series,
                       check=True)


if __name__ == "__main__":
    main()
