#!/usr/bin/env python3
"""The lecture's transfer-learning claim as a measured experiment (issue 18 item 6, docs/transfer.md).

    python3 scripts/transfer_study.py --attn build/tools/attn/attn --data-dir data/fortunes \
        --out runs/transfer-study --png docs/transfer_study.png

On the fortunes topics (scripts/prepare_fortunes.py: 10 classes from Debian's fortunes packages), for each
training-set size in --sizes (a seeded draw of train.tsv, the same examples for every model; 0 = all), trains

    (a) MiniLM (all-MiniLM-L6-v2 from the venv) fully fine-tuned    attn finetune --mode full
    (b) MiniLM frozen + linear head                                 attn finetune --mode frozen
    (c) MiniLM + LoRA (r 8, alpha 16, query and value)              attn finetune --mode lora
    (d) the same architecture from random initialisation            attn finetune --mode full --random-init
    (e) an LSTM from scratch                                         attn train-text --model lstm

for a fixed number of epochs per size (--epochs, converged budgets rather than a time limit), --jobs runs
at a time with --threads each, validating on the first 200 of valid.tsv at each epoch end and scoring
test.tsv (778) with the best weights. Writes <out>/summary.md (a markdown table: trainable parameters,
steps, best validation and test accuracy, training seconds without evaluations, wall seconds) and, with
--png, test accuracy against the number of training examples (PNG) and against training seconds
(PNG with _time before .png), drawn by `attn plot`.
A run whose directory holds result.json is not trained again (delete it to redo).
"""
import argparse
import concurrent.futures
import json
import os
import random
import shutil
import subprocess
import sys
import time

MODELS = {
    "a": ("MiniLM full fine-tuning", ["finetune", "--mode", "full", "--lr", "5e-5"]),
    "b": ("MiniLM frozen + linear head", ["finetune", "--mode", "frozen", "--head-lr", "1e-2"]),
    "c": ("MiniLM + LoRA r 8", ["finetune", "--mode", "lora", "--lr", "1e-3"]),
    "d": ("MiniLM architecture, random init", ["finetune", "--mode", "full", "--random-init", "--lr", "1e-4"]),
    "e": ("LSTM from scratch (train-text)", ["train-text", "--model", "lstm"]),
}


def subset(data_dir, out, n, seed):
    """data_dir with train.tsv replaced by a seeded draw of n lines (n = 0: all), in out/data-n<n>."""
    d = os.path.join(out, f"data-n{n or 'all'}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(data_dir, "train.tsv"), encoding="utf-8") as f:
        lines = f.readlines()
    if n:
        random.Random(seed).shuffle(lines)
        lines = lines[:n]
    with open(os.path.join(d, "train.tsv"), "w", encoding="utf-8") as f:
        f.writelines(lines)
    for name in ("valid.tsv", "test.tsv"):
        shutil.copyfile(os.path.join(data_dir, name), os.path.join(d, name))
    return d, len(lines)


def train(a, key, data, n, epochs):
    run_dir = os.path.join(a.out, f"{key}-n{n}")
    result_path = os.path.join(run_dir, "result.json")
    if os.path.exists(result_path):
        with open(result_path, encoding="utf-8") as f:
            return json.load(f)
    cmd = [a.attn] + MODELS[key][1] + ["--data-dir", data, "--out", run_dir, "--no-resume", "--max-len", "64",
                                       "--batch-size", "16", "--epochs", str(epochs), "--threads", str(a.threads),
                                       "--seed", str(a.seed), "--no-progress"]
    if key != "e":
        cmd += ["--valid-examples", "200"]
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["wall_seconds"] = time.perf_counter() - t0
    result["train_examples_used"] = n
    if "train_seconds" not in result:  # train-text: training seconds from its metrics
        with open(os.path.join(run_dir, "metrics.jsonl"), encoding="utf-8") as f:
            rows = [json.loads(l) for l in f if "train/seconds" in l]
        result["train_seconds"] = rows[-1]["train/seconds"] if rows else float("nan")
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f)
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--attn", default="build/tools/attn/attn")
    p.add_argument("--data-dir", default="data/fortunes")
    p.add_argument("--out", default="runs/transfer-study")
    p.add_argument("--sizes", type=int, nargs="*", default=[100, 1000, 0], help="training examples (0: all)")
    p.add_argument("--epochs", type=int, nargs="*", default=[30, 8, 3], help="epochs per size")
    p.add_argument("--lstm-epochs", type=int, nargs="*", default=[30, 10, 10], help="epochs per size for (e)")
    p.add_argument("--models", default="abcde")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--png", default="")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    work = []
    for i, size in enumerate(a.sizes):
        data, n = subset(a.data_dir, a.out, size, a.seed)
        for key in a.models:
            work.append((key, data, n, a.lstm_epochs[i] if key == "e" else a.epochs[i]))
    work.sort(key=lambda w: -w[2])  # the long runs first, so the pool ends together
    with concurrent.futures.ThreadPoolExecutor(a.jobs) as pool:
        futures = {w: pool.submit(train, a, *w) for w in work}
        results = {(w[0], w[2]): f.result() for w, f in futures.items()}
    rows = ["| training examples | model | trainable parameters | steps | best valid accuracy | test accuracy |"
            " training s | wall s |", "|---|---|---|---|---|---|---|---|"]
    for (key, n), r in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        trainable = r.get("trainable_parameters", r.get("parameters"))
        rows.append(f"| {n:,} | ({key}) {MODELS[key][0]} | {trainable:,} | {r['steps']} | "
                    f"{100 * r['best_valid_accuracy']:.1f} % | {100 * r['test_accuracy']:.1f} % | "
                    f"{r['train_seconds']:.0f} | {r['wall_seconds']:.0f} |")
    table = "\n".join(rows) + "\n"
    with open(os.path.join(a.out, "summary.md"), "w", encoding="utf-8") as f:
        f.write(table)
    print(table)
    if a.png:  # one metrics.jsonl per model: test accuracy at x = examples, and at x = training seconds
        runs = []
        for key in a.models:
            path = os.path.join(a.out, f"curve-{key}.jsonl")
            with open(path, "w", encoding="utf-8") as f:
                for (k, n), r in sorted(results.items(), key=lambda kv: kv[0][1]):
                    if k == key:
                        f.write(json.dumps({"step": n, "test/accuracy": r["test_accuracy"]}) + "\n")
            runs.append(f"({key})={path}")
        subprocess.run([a.attn, "plot", "--out", a.png, "--tag", "test/accuracy", "--x-label",
                        "training examples"] + runs, check=True)
        runs = []
        for key in a.models:
            path = os.path.join(a.out, f"time-{key}.jsonl")
            with open(path, "w", encoding="utf-8") as f:
                for (k, n), r in sorted(results.items(), key=lambda kv: kv[1]["train_seconds"]):
                    if k == key:
                        f.write(json.dumps({"step": int(round(r["train_seconds"])), "test/accuracy": r["test_accuracy"]}) + "\n")
            runs.append(f"({key})={path}")
        subprocess.run([a.attn, "plot", "--out", a.png.replace(".png", "_time.png"), "--tag", "test/accuracy",
                        "--x-label", "training seconds (1 thread)"] + runs, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
