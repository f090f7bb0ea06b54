#!/usr/bin/env python3
"""tests/make_gpt2_cli_fixture.py — a tiny Hugging Face GPT-2 directory with a byte-level BPE tokenizer and
transformers' greedy generations from it, for `attn generate --model DIR` (tests/test_generate_cli.cc).
Run with the venv's python; CI reads the committed files only.

    ~/.cache/attn/venv/bin/python tests/make_gpt2_cli_fixture.py

Writes tests/fixtures/hf_models/gpt2_cli/: config.json + model.safetensors of a randomly initialised
GPT2LMHeadModel (vocabulary = tests/fixtures/tokenizers/bpe's 800 tokens, EOS "<|endoftext|>"), that
tokenizer's tokenizer.json, vocab.json and merges.txt, and expected.json: per prompt, the ids and text of transformers'
greedy generate (use_cache, EOS from the config), the text decoded with skip_special_tokens.
Each greedy step's best logit beats the runner-up by a margin, so float rounding cannot flip a choice.
"""
import json
import os
import shutil

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "fixtures", "hf_models", "gpt2_cli")
BPE = os.path.join(HERE, "fixtures", "tokenizers", "bpe")
PROMPTS = ["It is a truth", "The quick brown fox", "café, naïve — déjà vu!", "x"]
FILES = ("tokenizer.json", "vocab.json", "merges.txt")  # as a GPT-2 directory on the Hub has them
MAX_NEW_TOKENS = 12
MIN_MARGIN = 1e-2  # logit gap between the chosen token and the runner-up at every greedy step


def smallest_margin(model, ids):
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW_TOKENS, do_sample=False,
                             use_cache=True, output_scores=True, return_dict_in_generate=True)
    top2 = [s.topk(2, dim=-1).values[0] for s in out.scores]
    return out.sequences[0], min(float(t[0] - t[1]) for t in top2)


def main():
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    for name in FILES:
        shutil.copy(os.path.join(BPE, name), OUT)
    tok = GPT2TokenizerFast(tokenizer_file=os.path.join(OUT, "tokenizer.json"))
    eos = tok.convert_tokens_to_ids("<|endoftext|>")
    for seed in range(100):  # the first seed whose greedy choices are all clear-cut
        torch.manual_seed(seed)
        cfg = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=16, n_layer=2, n_head=4, initializer_range=0.3,
                         bos_token_id=eos, eos_token_id=eos)
        model = GPT2LMHeadModel(cfg).eval()
        model.generation_config.pad_token_id = eos
        expected = []
        ok = True
        for prompt in PROMPTS:
            ids = torch.tensor([tok.encode(prompt)])
            seq, margin = smallest_margin(model, ids)
            ok = ok and margin >= MIN_MARGIN
            expected.append({"prompt": prompt, "prompt_ids": ids[0].tolist(), "ids": seq.tolist(),
                             "text": tok.decode(seq, skip_special_tokens=True)})
        if ok:
            break
    else:
        raise SystemExit("no seed below 100 gives clear-cut greedy choices")
    model.save_pretrained(OUT)
    for extra in os.listdir(OUT):
        if extra not in ("config.json", "model.safetensors") + FILES:
            os.remove(os.path.join(OUT, extra))
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"seed": seed, "max_new_tokens": MAX_NEW_TOKENS, "eos_token_id": eos, "cases": expected}, f,
                  indent=1, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {OUT} (seed {seed})")


if __name__ == "__main__":
    main()
