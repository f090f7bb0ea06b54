#!/usr/bin/env python3
"""attn and CTranslate2 side by side on the same exported translator (issue 20's comparison, fp32, int8, bf16).

    attn train-translator --marian --out runs/translate-marian ...            # a Marian-compatible run
    attn export --format hf-marian --model runs/translate-marian --out runs/translate-hf
    ~/.cache/attn/venv/bin/python bench/ctranslate2_translate.py --model runs/translate-hf \\
        [--attn build/tools/attn/attn] [--src data/bible/test.en --ref data/bible/test.es] [--limit 200] [--rounds 2]

Both sides run the same MarianMTModel directory: attn through its Marian import (`attn translate --model DIR`,
the exported model is the attn run's, checked token for token by the HfMarianExport test), CTranslate2 on
the directory converted once by ct2-transformers-converter (float32) into DIR/ct2-float32. Each side runs in
its own process that loads the model, tokenizes, translates every line and detokenizes (all timed: attn's
process wall time; CTranslate2's from before loading its model, after Python's start-up and imports), with 2 threads (attn: OMP_NUM_THREADS=2; CTranslate2: intra_threads=2, one
translator). Workloads, as make bench names them:

    translate_beam4_fp32      beam 4, 32 sentences per batch
    translate_greedy_b1_fp32  greedy, one sentence at a time
    translate_beam4_int8      the same with attn --precision int8 (the float32 directory quantised as it
    translate_greedy_b1_int8  loads) against CTranslate2's compute_type int8 (likewise quantised on loading)
    translate_beam4_bf16      attn --precision bf16 (autocast: bf16 products, the float32 weights' bf16
    translate_greedy_b1_bf16  copies made once) against CTranslate2's fastest CPU type, int8 (it has no
                              bf16 on CPUs)

Rounds alternate the order (attn first in even rounds); the ratio printed is the median over rounds of
attn tokens/s / CTranslate2 tokens/s (> 1: attn is faster). Tokens are the target SentencePiece pieces
of each side's own output (+1 per sentence for EOS). BLEU is sacreBLEU's (13a) on each side's output.
Peak memory: each process's resident high-water mark (wait4's ru_maxrss; CTranslate2's includes Python).
The CTranslate2 side batches as attn does (non-empty lines sorted by length, `batch` at a time) and passes
each batch attn's output limit (1.5 * its longest source + 10 tokens) as max_decoding_length.

Lines, tab separated, as bench/run.py prints them:
    workload  peer  attn_value  peer_value  unit  ratio  attn_peak_MiB  -  peer_peak_MiB  -  note
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORKLOADS = {
    "translate_beam4_fp32": {"beam": 4, "batch": 32, "precision": "fp32"},
    "translate_greedy_b1_fp32": {"beam": 1, "batch": 1, "precision": "fp32"},
    "translate_beam4_int8": {"beam": 4, "batch": 32, "precision": "int8"},
    "translate_greedy_b1_int8": {"beam": 1, "batch": 1, "precision": "int8"},
    "translate_beam4_bf16": {"beam": 4, "batch": 32, "precision": "bf16"},
    "translate_greedy_b1_bf16": {"beam": 1, "batch": 1, "precision": "bf16"},
}
CT2_COMPUTE_TYPE = {"fp32": "float32", "int8": "int8", "bf16": "int8"}  # attn precision -> CTranslate2's peer


def run_measured(cmd, env=None):
    """Runs cmd; returns (wall seconds, peak resident MiB) of that process alone (os.wait4)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    if status != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({status}): {err[-2000:]}")
    return seconds, usage.ru_maxrss / 1024.0


def ct2_worker(a):
    """One CTranslate2 process: load, tokenize, translate, detokenize, write --output."""
    import ctranslate2
    import sentencepiece as spm
    t0 = time.perf_counter()  # the interpreter's start and imports are not counted
    src_sp = spm.SentencePieceProcessor(model_file=os.path.join(a.model, "source.spm"))
    tgt_sp = spm.SentencePieceProcessor(model_file=os.path.join(a.model, "target.spm"))
    translator = ctranslate2.Translator(a.ct2_dir, device="cpu", compute_type=a.compute_type, inter_threads=1,
                                        intra_threads=a.threads)
    with open(a.src) as f:
        lines = [l.rstrip("\n") for l in f]
    tokens = [src_sp.encode(l, out_type=str) + ["</s>"] for l in lines]
    # attn's batching: non-empty lines sorted by length, `batch` at a time, each batch's output limited to
    # 1.5 * its longest source (with EOS) + 10 tokens, so that both sides do the same work
    order = sorted((i for i, l in enumerate(lines) if l.strip()), key=lambda i: len(tokens[i]))
    results = [None] * len(lines)
    for start in range(0, len(order), a.batch):
        chunk = order[start:start + a.batch]
        limit = int(1.5 * max(len(tokens[i]) for i in chunk)) + 10
        out = translator.translate_batch([tokens[i] for i in chunk], beam_size=a.beam, max_batch_size=a.batch,
                                         max_decoding_length=limit, length_penalty=1.0)
        for i, r in zip(chunk, out):
            results[i] = r
    with open(a.output, "w") as f:
        for line, r in zip(lines, results):
            f.write((tgt_sp.decode_pieces(r.hypotheses[0]) if r is not None else "") + "\n")
    with open(a.output + ".seconds", "w") as f:
        f.write(f"{time.perf_counter() - t0}\n")


def convert(model, ct2_dir):
    if os.path.exists(os.path.join(ct2_dir, "model.bin")):
        return
    converter = os.path.join(os.path.dirname(sys.executable), "ct2-transformers-converter")
    subprocess.run([converter, "--model", model, "--output_dir", ct2_dir, "--quantization", "float32", "--force"],
                   check=True, capture_output=True)


def count_tokens(sp, path):
    with open(path) as f:
        return sum(len(sp.encode(l.rstrip("\n"))) + 1 for l in f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="exported MarianMTModel directory")
    ap.add_argument("--attn", default=os.path.join(ROOT, "build", "tools", "attn", "attn"))
    ap.add_argument("--src", default=os.path.join(ROOT, "data", "bible", "test.en"))
    ap.add_argument("--ref", default=os.path.join(ROOT, "data", "bible", "test.es"))
    ap.add_argument("--limit", type=int, default=0, help="first N lines only (0: all)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workloads", nargs="*", default=list(WORKLOADS))
    ap.add_argument("--ct2-dir", help="converted model (default MODEL/ct2-float32)")
    ap.add_argument("--json", action="store_true", help="one JSON object per workload (bench/ct2_run.py reads them)")
    # internal: one CTranslate2 process
    ap.add_argument("--ct2-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--beam", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--output", help=argparse.SUPPRESS)
    ap.add_argument("--compute-type", default="float32", help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.ct2_dir = a.ct2_dir or os.path.join(a.model, "ct2-float32")
    if a.ct2_worker:
        return ct2_worker(a)

    import sacrebleu
    import sentencepiece as spm
    convert(a.model, a.ct2_dir)
    tgt_sp = spm.SentencePieceProcessor(model_file=os.path.join(a.model, "target.spm"))
    work = tempfile.mkdtemp(prefix="attn_ct2_")
    src = os.path.join(work, "src.txt")
    with open(a.src) as f:
        lines = [l.rstrip("\n") for l in f]
    with open(a.ref) as f:
        refs = [l.rstrip("\n") for l in f]
    if a.limit:
        lines, refs = lines[:a.limit], refs[:a.limit]
    with open(src, "w") as f:
        f.write("\n".join(lines) + "\n")
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    print("# workload\tpeer\tattn_value\tpeer_value\tunit\tratio\tattn_peak_MiB\tattn_above_base_MiB"
          "\tpeer_peak_MiB\tpeer_above_base_MiB\tnote", flush=True)
    for name in a.workloads:
        w = WORKLOADS[name]
        outs = {"attn": os.path.join(work, "attn.out"), "ctranslate2": os.path.join(work, "ct2.out")}
        cmds = {
            "attn": [a.attn, "translate", "--model", a.model, "--input", src, "--output", outs["attn"],
                     "--beam", str(w["beam"]), "--batch-size", str(w["batch"]), "--precision", w["precision"],
                     "--no-progress"],
            "ctranslate2": [sys.executable, os.path.abspath(__file__), "--ct2-worker", "--model", a.model,
                            "--ct2-dir", a.ct2_dir, "--src", src, "--output", outs["ctranslate2"], "--beam",
                            str(w["beam"]), "--batch", str(w["batch"]), "--threads", str(a.threads),
                            "--compute-type", CT2_COMPUTE_TYPE[w["precision"]]],
        }
        rate, peak, ratios, bleu = {"attn": [], "ctranslate2": []}, {"attn": 0.0, "ctranslate2": 0.0}, [], {}
        for r in range(a.rounds):
            order = ["attn", "ctranslate2"] if r % 2 == 0 else ["ctranslate2", "attn"]
            for side in order:
                seconds, mib = run_measured(cmds[side], env)
                if side == "ctranslate2":  # its own clock: without Python's start-up and imports
                    with open(outs[side] + ".seconds") as f:
                        seconds = float(f.read())
                rate[side].append(count_tokens(tgt_sp, outs[side]) / seconds)
                peak[side] = max(peak[side], mib)
                with open(outs[side]) as f:
                    hyps = [l.rstrip("\n") for l in f]
                bleu[side] = sacrebleu.corpus_bleu(hyps, [refs]).score
            ratios.append(rate["attn"][-1] / rate["ctranslate2"][-1])
        note = (f"BLEU attn {bleu['attn']:.2f} / ctranslate2 {bleu['ctranslate2']:.2f}; "
                f"ctranslate2 compute_type {CT2_COMPUTE_TYPE[w['precision']]}; {len(lines)} sentences; "
                f"{a.rounds} rounds; median tokens/s")
        if a.json:
            print(json.dumps({"workload": name, "attn": statistics.median(rate["attn"]),
                              "ctranslate2": statistics.median(rate["ctranslate2"]), "ratio": statistics.median(ratios),
                              "attn_peak_mib": peak["attn"], "ctranslate2_peak_mib": peak["ctranslate2"],
                              "bleu_attn": bleu["attn"], "bleu_ctranslate2": bleu["ctranslate2"], "note": note}),
                  flush=True)
            continue
        print("\t".join([name, "ctranslate2", f"{statistics.median(rate['attn']):.1f}",
                         f"{statistics.median(rate['ctranslate2']):.1f}", "tokens/s",
                         f"{statistics.median(ratios):.3f}", f"{peak['attn']:.0f}", "-", f"{peak['ctranslate2']:.0f}",
                         "-", note]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
