#!/usr/bin/env python3
"""make bench's translation lines against CTranslate2 (bench/run.py calls rows(); also runnable alone):

    ATTN_BENCH_TRANSLATOR=runs/translate-marian python bench/ct2_run.py [--rounds 2] [--limit 0]

The model: a train-translator run directory trained with --marian (ATTN_BENCH_TRANSLATOR, or --model),
exported once with `attn export --format hf-marian` into <run>/bench-hf-marian; both sides run that same
MarianMTModel directory (attn through its Marian import, CTranslate2 on its ct2-transformers-converter
conversion), on the held-out data/bible/test verses, each in its own process with 2 threads (attn:
OMP_NUM_THREADS=2; CTranslate2: intra_threads=2, one translator). See bench/ctranslate2_translate.py for
what is timed and counted. Lines (peer ctranslate2):

    translate_beam4_fp32       beam 4, batch 32; attn float32 vs CTranslate2 compute_type float32
    translate_greedy_b1_fp32   greedy, batch 1
    translate_beam4_int8       attn --precision int8 (int8 weights per output channel, int8 activations)
    translate_greedy_b1_int8     vs CTranslate2 compute_type int8
    translate_beam4_bf16       attn --precision bf16 vs CTranslate2's fastest CPU type, compute_type int8
    translate_greedy_b1_bf16     (CTranslate2 has no bf16 on CPUs)

The note holds sacreBLEU (13a) of both sides' outputs. Without a model the lines are skipped with a note
saying how to get one.
"""
import argparse
import os
import subprocess
import sys

import ctranslate2_translate as ct2t

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
NAMES = list(ct2t.WORKLOADS)
ENV_MODEL = "ATTN_BENCH_TRANSLATOR"


def model_dir(explicit=None):
    return explicit or os.environ.get(ENV_MODEL, "")


def skip_reason(build_dir, python, run_dir):
    """Why the lines cannot run, or "" when they can."""
    if not run_dir:
        return (f"skipped: set {ENV_MODEL}=RUN_DIR (a run of `attn train-translator --marian`, e.g. "
                f"{ENV_MODEL}=runs/demo-marian make bench)")
    if not os.path.exists(os.path.join(run_dir, "config.json")):
        return f"skipped: {ENV_MODEL}={run_dir} has no config.json (not a train-translator run directory)"
    if not os.path.exists(os.path.join(ROOT, "data", "bible", "test.en")):
        return "skipped: no data/bible/test.en (make demo prepares it with scripts/prepare_bible.py)"
    if not os.path.exists(os.path.join(build_dir, "tools", "attn", "attn")):
        return f"skipped: no {build_dir}/tools/attn/attn (build the attn_cli target)"
    probe = subprocess.run([python, "-c", "import ctranslate2, sacrebleu, sentencepiece"], capture_output=True)
    if probe.returncode != 0:
        return "skipped: the venv lacks ctranslate2 / sacrebleu / sentencepiece (scripts/setup-venv.sh)"
    return ""


def export(attn, run_dir):
    """The run as a MarianMTModel directory, exported once (again when the run's weights are newer)."""
    hf = os.path.join(run_dir, "bench-hf-marian")
    weights = [os.path.join(run_dir, f) for f in ("best.safetensors", "checkpoint.safetensors")]
    newest = max((os.path.getmtime(w) for w in weights if os.path.exists(w)), default=0)
    done = os.path.join(hf, "model.safetensors")
    if not os.path.exists(done) or os.path.getmtime(done) < newest:
        subprocess.run([attn, "export", "--format", "hf-marian", "--model", run_dir, "--out", hf], check=True,
                       capture_output=True)
        for old in ("ct2-float32",):  # a conversion of older weights
            subprocess.run(["rm", "-rf", os.path.join(hf, old)], check=True)
    return hf


def rows(build_dir, python, rounds=2, limit=0, names=None, run_dir=None):
    """One row per workload (bench/run.py's row dicts); raises RuntimeError when a side fails."""
    run_dir = model_dir(run_dir)
    attn = os.path.join(build_dir, "tools", "attn", "attn")
    hf = export(attn, run_dir)
    cmd = [python, os.path.join(HERE, "ctranslate2_translate.py"), "--model", hf, "--attn", attn,
           "--rounds", str(rounds), "--json", "--workloads"] + (names or NAMES)
    if limit:
        cmd += ["--limit", str(limit)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr[-2000:]}")
    import json
    out = []
    for line in p.stdout.splitlines():
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        out.append({"workload": r["workload"], "peer": "ctranslate2",
                    "attn": {"value": r["attn"], "unit": "tokens/s", "peak_rss_mib": r["attn_peak_mib"]},
                    "pytorch": {"value": r["ctranslate2"], "unit": "tokens/s", "peak_rss_mib": r["ctranslate2_peak_mib"]},
                    "ratio": r["ratio"], "note": f"model {run_dir}; " + r["note"]})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.environ.get("ATTN_BUILD_DIR", os.path.join(ROOT, "build")))
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--model", help=f"run directory (default ${ENV_MODEL})")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--limit", type=int, default=0, help="first N test lines only (0: all 1,027)")
    ap.add_argument("workloads", nargs="*", default=NAMES)
    a = ap.parse_args()
    why = skip_reason(a.build_dir, a.python, model_dir(a.model))
    if why:
        for n in a.workloads:
            print(f"{n}\tctranslate2\t-\t-\ttokens/s\t-\t{why}", flush=True)
        return 0
    for r in rows(a.build_dir, a.python, a.rounds, a.limit, a.workloads, a.model):
        print("\t".join([r["workload"], r["peer"], f"{r['attn']['value']:.1f}", f"{r['pytorch']['value']:.1f}",
                         "tokens/s", f"{r['ratio']:.3f}", f"{r['attn']['peak_rss_mib']:.0f}",
                         f"{r['pytorch']['peak_rss_mib']:.0f}", r["note"]]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
