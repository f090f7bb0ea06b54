#!/usr/bin/env python3
"""A small trained translator checkpoint for the decoding golden test: tests/fixtures/translator_small.safetensors.

    ~/.cache/attn/venv/bin/python tests/make_translator_fixture.py    (needs torch, safetensors)

bench/torch_bench.py's Translator (the same architecture and parameter names as attn's models::Translator:
shared embedding x sqrt(d), sinusoidal positions, post-LN nn.Transformer, output projection tied to the
embedding + bias) with vocab 20, d_model 32, 4 heads, 2 + 2 layers, feed-forward 64, trained for a few
hundred Adam steps to reverse sequences of 2..9 words (ids 4..19), partly (test sources up to 16 words), so that its greedy and beam outputs are
varied, end with EOS at different lengths and are not all equal. Stored: the state_dict under attn's keys
("generator.bias" -> "output_bias"; the tied generator.weight is the embedding), and "src", a padded
(6, 17) batch of test sources (each ends with EOS = 3, padding 0). The metadata holds the options and
PyTorch's greedy output on "src" (the decoder re-run over the prefix), which tests/test_translator.cc
compares with attn's cached decoding.
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bench"))
from torch_bench import Translator  # noqa: E402

torch.manual_seed(0)
torch.set_num_threads(1)
V, D, H, LAYERS, FF, MAX_LEN = 20, 32, 4, 2, 64, 64
PAD, BOS, EOS, FIRST_WORD = 0, 2, 3, 4
STEPS, BATCH = 150, 32

model = Translator(vocab_size=V, d_model=D, nhead=H, num_encoder_layers=LAYERS, num_decoder_layers=LAYERS,
                   dim_feedforward=FF, dropout=0.0, max_len=MAX_LEN, pad_id=PAD, bos_id=BOS, eos_id=EOS)


def reversal_batch(n, lengths=None):
    """src = words + EOS, tgt_in = BOS + reversed words, tgt_out = reversed words + EOS; padded with 0."""
    lengths = lengths or torch.randint(2, 10, (n,)).tolist()
    S = max(lengths) + 1
    src = torch.full((n, S), PAD)
    tgt_in, tgt_out = torch.full((n, S), PAD), torch.full((n, S), PAD)
    for r, l in enumerate(lengths):
        w = torch.randint(FIRST_WORD, V, (l,))
        src[r, :l], src[r, l] = w, EOS
        tgt_in[r, 0], tgt_in[r, 1:l + 1] = BOS, w.flip(0)
        tgt_out[r, :l], tgt_out[r, l] = w.flip(0), EOS
    return src, tgt_in, tgt_out


opt = torch.optim.Adam(model.parameters(), lr=3e-3, betas=(0.9, 0.98))
model.train()
for step in range(STEPS):
    src, tgt_in, tgt_out = reversal_batch(BATCH)
    loss = F.cross_entropy(model(src, tgt_in).flatten(0, 1), tgt_out.flatten(), ignore_index=PAD)
    opt.zero_grad()
    loss.backward()
    opt.step()
print("final training loss", float(loss.detach()))

model.eval()
src, _, _ = reversal_batch(6, [3, 7, 9, 12, 16, 5])  # longer than trained: imperfect, varied outputs
GREEDY_MAX_LEN = 24


@torch.no_grad()
def greedy(src):
    memory = model.encode(src)
    ys = torch.full((src.size(0), 1), BOS)
    done = torch.zeros(src.size(0), dtype=torch.bool)
    out = [[] for _ in range(src.size(0))]
    for _ in range(GREEDY_MAX_LEN):
        logits = model.generator(model.decode(ys, memory, src)[:, -1])
        nxt = logits.argmax(-1)
        for r in range(src.size(0)):
            if not done[r]:
                if int(nxt[r]) == EOS:
                    done[r] = True
                else:
                    out[r].append(int(nxt[r]))
        ys = torch.cat([ys, nxt.unsqueeze(1)], 1)
        if bool(done.all()):
            break
    return out


torch_greedy = greedy(src)
print("sources", src.tolist())
print("greedy", torch_greedy)

state = {}
for k, v in model.state_dict().items():
    if k == "generator.weight":
        continue  # tied to embedding.weight
    state["output_bias" if k == "generator.bias" else k] = v.detach().clone().contiguous()
state["src"] = src.contiguous()
meta = dict(vocab_size=V, d_model=D, nhead=H, num_layers=LAYERS, dim_feedforward=FF, max_len=MAX_LEN,
            greedy_max_len=GREEDY_MAX_LEN, torch_greedy=torch_greedy)
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "translator_small.safetensors")
save_file(state, out, metadata={"options": json.dumps(meta), "torch": torch.__version__})
print("wrote", out, os.path.getsize(out), "bytes")
