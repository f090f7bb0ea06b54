#!/usr/bin/env python3
"""The export round trip (ctest HfMarianExport): a tiny attn translator trained with `--marian`, exported with
`attn export --format hf-marian`, loaded by transformers' MarianMTModel / MarianTokenizer.

    ~/.cache/attn/venv/bin/python tests/check_hf_marian_export.py --attn build/tools/attn/attn

Checked: transformers' greedy output (generate, the exported generation_config) is token-identical to the
attn run's, as ids against PyTorch's re-implementation of attn's translator (bench/torch_bench.Translator on
the run's checkpoint, attn's own layout: interleaved positions, attn's token ids) and as text against
`attn translate --greedy` on the run and on the exported directory; transformers' logits of the
teacher-forced outputs equal the reference's within 1e-4; CTranslate2's ct2-transformers-converter
converts the directory and its greedy output is the same tokens. Exits 77 (skipped) when the venv lacks
torch or transformers; the CTranslate2 part is skipped alone when ctranslate2 is missing.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
EN = ["god", "light", "earth", "water", "day", "night", "man", "king", "house", "bread"]
ES = ["dios", "luz", "tierra", "agua", "dia", "noche", "hombre", "rey", "casa", "pan"]
SOURCES = ["god light day", "king of bread", "water night man house", "the earth was without form",
           "bread bread bread king god light water", "house"]


def write_corpus(prefix, n, seed):
    """Word-for-word pairs of 2-9 words (tests/translation_corpus.h's LCG)."""
    s = seed
    with open(prefix + ".en", "w") as fe, open(prefix + ".es", "w") as fs:
        for _ in range(n):
            s = (s * 1664525 + 1013904223) % 2**32
            length = 2 + (s >> 29)
            words = []
            for _ in range(length):
                s = (s * 1664525 + 1013904223) % 2**32
                words.append((s >> 28) % 10)
            fe.write(" ".join(EN[w] for w in words) + "\n")
            fs.write(" ".join(ES[w] for w in words) + "\n")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def attn_reference(torch, run_dir, cfg):
    """attn's translator in PyTorch (bench/torch_bench.py) with the run's weights, without the final norms."""
    sys.path.insert(0, os.path.join(HERE, "..", "bench"))
    from safetensors.torch import load_file
    from torch_bench import Translator
    m = cfg["model"]
    model = Translator(vocab_size=m["vocab_size"], d_model=m["d_model"], nhead=m["nhead"],
                       num_encoder_layers=m["num_encoder_layers"], num_decoder_layers=m["num_decoder_layers"],
                       dim_feedforward=m["dim_feedforward"], dropout=0.0, max_len=m["max_len"],
                       pad_id=m["pad_id"], bos_id=m["bos_id"], eos_id=m["eos_id"])
    model.transformer.encoder.norm = torch.nn.Identity()  # --marian: no final LayerNorms
    model.transformer.decoder.norm = torch.nn.Identity()
    ckpt = os.path.join(run_dir, "best.safetensors")
    if not os.path.exists(ckpt):
        ckpt = os.path.join(run_dir, "checkpoint.safetensors")
    state = {k[len("model."):]: v for k, v in load_file(ckpt).items() if k.startswith("model.")}
    state["generator.bias"] = state.pop("output_bias")
    state["generator.weight"] = state["embedding.weight"]
    model.load_state_dict(state, strict=True)
    return model.eval()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attn", required=True, help="the attn CLI")
    ap.add_argument("--keep", help="keep the work directory here")
    a = ap.parse_args()
    try:
        import torch
        from transformers import MarianMTModel, MarianTokenizer
    except ImportError as e:
        print("skipped: the venv lacks", e.name)
        return 77
    import json
    torch.manual_seed(0)
    work = a.keep or tempfile.mkdtemp(prefix="attn_hf_marian_")
    os.makedirs(work, exist_ok=True)
    try:
        write_corpus(os.path.join(work, "train"), 400, 7)
        write_corpus(os.path.join(work, "dev"), 20, 99)
        run_dir, hf = os.path.join(work, "run"), os.path.join(work, "hf")
        run([a.attn, "train-translator", "--marian", "--train", os.path.join(work, "train"), "--dev",
             os.path.join(work, "dev"), "--out", run_dir, "--vocab-size", "48", "--d-model", "32", "--heads", "4",
             "--layers", "1", "--ff", "64", "--max-tokens", "400", "--warmup", "50", "--lr-factor", "0.3",
             "--max-steps", "150", "--eval-every", "150", "--eval-sentences", "10", "--no-progress"])
        run([a.attn, "export", "--format", "hf-marian", "--model", run_dir, "--out", hf])
        with open(os.path.join(run_dir, "config.json")) as f:
            cfg = json.load(f)
        ref = attn_reference(torch, run_dir, cfg)
        model = MarianMTModel.from_pretrained(hf).eval()
        tok = MarianTokenizer.from_pretrained(hf)
        V, pad = cfg["model"]["vocab_size"], cfg["model"]["pad_id"]
        to_hf = [j if j < pad else j - 1 for j in range(V)]
        to_hf[pad] = V - 1
        to_attn = {h: j for j, h in enumerate(to_hf)}

        src_file = os.path.join(work, "src.txt")
        with open(src_file, "w") as f:
            f.write("\n".join(SOURCES) + "\n")
        attn_text = {}
        for name, d in (("run", run_dir), ("exported", hf)):
            out = run([a.attn, "translate", "--model", d, "--greedy", "--batch-size", "1", "--input", src_file])
            attn_text[name] = out.stdout.rstrip("\n").split("\n")
        failures, worst, hf_outputs, finished = [], 0.0, [], 0
        for i, line in enumerate(SOURCES):
            ids = tok([line], return_tensors="pt").input_ids
            limit = int(1.5 * ids.size(1)) + 10  # attn translate's a * S + b (S with EOS)
            with torch.no_grad():
                gen = model.generate(ids, num_beams=1, do_sample=False, max_new_tokens=limit)
                logits = model(input_ids=ids, decoder_input_ids=gen).logits[0]
                src_attn = torch.tensor([[to_attn[int(t)] for t in ids[0]]])
                tgt_attn = torch.tensor([[to_attn[int(t)] for t in gen[0]]])
                ref_logits = ref(src_attn, tgt_attn)[0][:, to_attn_index(to_hf)]
                ref_gen = reference_greedy(torch, ref, src_attn, limit, pad, cfg["model"]["eos_id"])
            hf_ids = [int(t) for t in gen[0][1:]]
            eos = model.config.eos_token_id
            finished += bool(hf_ids) and hf_ids[-1] == eos
            hf_ids = hf_ids[:-1] if hf_ids and hf_ids[-1] == eos else hf_ids
            hf_outputs.append(hf_ids)
            worst = max(worst, float((logits - ref_logits).abs().max()))
            if [to_attn[t] for t in hf_ids] != ref_gen:
                failures.append(f"{line!r}: transformers {hf_ids} vs attn's model {[to_hf[t] for t in ref_gen]}")
            text = tok.decode(gen[0], skip_special_tokens=True)
            for name in attn_text:
                if attn_text[name][i] != text:
                    failures.append(f"{line!r}: transformers {text!r} vs attn translate ({name}) {attn_text[name][i]!r}")
        print(f"max |logit difference| {worst:.2e} over {len(SOURCES)} sentences; {finished} ended with EOS")
        if worst > 1e-4:
            failures.append(f"logits differ by {worst:.3g} > 1e-4")
        failures += check_ctranslate2(hf, tok, hf_outputs, work)
        for f in failures:
            print("FAIL", f)
        if not failures:
            print("ok: transformers loads the export; greedy tokens identical; logits within 1e-4")
        return 1 if failures else 0
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


def to_attn_index(to_hf):
    """Column order that puts attn's logits in Hugging Face id order."""
    order = [0] * len(to_hf)
    for j, h in enumerate(to_hf):
        order[h] = j
    return order


def reference_greedy(torch, ref, src, limit, pad, eos):
    """Greedy decoding on the reference (re-running the decoder; pad never produced, as attn and Marian)."""
    ys, out = torch.tensor([[pad]]), []
    memory = ref.encode(src)
    for _ in range(limit):
        logits = ref.generator(ref.decode(ys, memory, src)[:, -1])[0]
        logits[pad] = float("-inf")
        t = int(logits.argmax())
        if t == eos:
            break
        out.append(t)
        ys = torch.cat([ys, torch.tensor([[t]])], 1)
    return out


def check_ctranslate2(hf, tok, hf_outputs, work):
    try:
        import ctranslate2
    except ImportError:
        print("ctranslate2 not installed: conversion not checked")
        return []
    converter = os.path.join(os.path.dirname(sys.executable), "ct2-transformers-converter")
    out_dir = os.path.join(work, "ct2")
    run([converter, "--model", hf, "--output_dir", out_dir, "--force"])
    translator = ctranslate2.Translator(out_dir, device="cpu", inter_threads=1, intra_threads=2)
    failures = []
    for line, expected in zip(SOURCES, hf_outputs):
        pieces = tok.convert_ids_to_tokens(tok([line]).input_ids[0])
        limit = int(1.5 * len(pieces)) + 10
        r = translator.translate_batch([pieces], beam_size=1, max_decoding_length=limit)[0]
        got = r.hypotheses[0]
        want = tok.convert_ids_to_tokens(expected)
        if got != want:
            failures.append(f"{line!r}: CTranslate2 {got} vs transformers {want}")
    print(f"CTranslate2 {ctranslate2.__version__}: converted; greedy compared on {len(SOURCES)} sentences")
    return failures


if __name__ == "__main__":
    sys.exit(main())
