#!/usr/bin/env python3
"""Reference outputs of transformers' generate for attn's decoding options: tests/fixtures/decoding.json.

    ~/.cache/attn/venv/bin/python tests/make_decoding_fixtures.py    (needs torch, transformers)

A toy language model that both sides compute exactly in float32: the logits of the next token are
R[sentence] + W1[last token] + W2[token before it (row V at the first step)] + U[step]. transformers'
generate (greedy, beam search with length penalty, early stopping, n-best and scores, min_new_tokens,
no_repeat_ngram_size, repetition_penalty) runs it on each sentence alone from the prompt [BOS];
tests/test_decoding.cc decodes the same tables batched with attn::models (all sentences at once) and
compares tokens and scores. The sampling warpers (Temperature, TopK, TopP) are compared on fixed rows
of logits, since torch's random numbers are not attn's.
"""
import json
import os

import torch
from transformers import GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper
from transformers.modeling_outputs import CausalLMOutput

V, STEPS, SENTENCES, BOS, EOS = 16, 12, 3, 0, 1
torch.manual_seed(0)
W1 = torch.randn(V, V) * 1.5
W2 = torch.randn(V + 1, V) * 1.0
U = torch.randn(STEPS, V) * 0.5
U[:, EOS] = torch.linspace(-3.0, 2.5, STEPS)  # ending grows likelier with length
R = torch.randn(SENTENCES, V) * 1.0
W1[:, BOS] = -20.0  # BOS is never generated


class ToyConfig(PretrainedConfig):
    model_type = "attn_toy_bigram"

    def __init__(self, vocab_size=V, **kw):
        super().__init__(**kw)
        self.vocab_size = vocab_size


class ToyLM(PreTrainedModel, GenerationMixin):
    config_class = ToyConfig

    def __init__(self, config):
        super().__init__(config)
        self.unused = torch.nn.Parameter(torch.zeros(1))
        self.sentence = 0

    def forward(self, input_ids, attention_mask=None, **kw):
        n, length = input_ids.shape
        last = input_ids[:, -1]
        before = input_ids[:, -2] if length >= 2 else torch.full((n,), V)
        logits = ((R[self.sentence][None, :] + W1[last]) + W2[before]) + U[length - 1][None, :]
        return CausalLMOutput(logits=logits[:, None, :])

    def prepare_inputs_for_generation(self, input_ids, **kw):
        return {"input_ids": input_ids}


model = ToyLM(ToyConfig(bos_token_id=BOS, eos_token_id=EOS, pad_token_id=EOS)).eval()

CASES = [  # name, generate options (attn's names in the test)
    ("greedy", {}),
    ("greedy_short", {"max_new_tokens": 4}),
    ("greedy_repetition", {"repetition_penalty": 1.8}),
    ("greedy_no_repeat_2", {"no_repeat_ngram_size": 2}),
    ("greedy_min_len", {"min_new_tokens": 7}),
    ("beam4_lp1_full", {"num_beams": 4, "length_penalty": 1.0, "early_stopping": True, "num_return_sequences": 3}),
    ("beam4_lp0_full", {"num_beams": 4, "length_penalty": 0.0, "early_stopping": True, "num_return_sequences": 2}),
    ("beam4_lp06_heuristic", {"num_beams": 4, "length_penalty": 0.6, "early_stopping": False, "num_return_sequences": 4}),
    ("beam3_lp2_never", {"num_beams": 3, "length_penalty": 2.0, "early_stopping": "never", "num_return_sequences": 2}),
    ("beam4_short", {"num_beams": 4, "length_penalty": 1.0, "early_stopping": True, "max_new_tokens": 5, "num_return_sequences": 4}),
    ("beam4_processors", {"num_beams": 4, "length_penalty": 1.0, "early_stopping": True, "no_repeat_ngram_size": 3,
                          "repetition_penalty": 1.3, "min_new_tokens": 5, "num_return_sequences": 2}),
    ("beam2_repetition", {"num_beams": 2, "length_penalty": 1.0, "early_stopping": False, "repetition_penalty": 0.7}),
]


def run(opts):
    out = []
    for s in range(SENTENCES):
        model.sentence = s
        kw = {"max_new_tokens": STEPS, "do_sample": False, "use_cache": False, "output_scores": True,
              "return_dict_in_generate": True}
        kw.update(opts)
        kw.setdefault("num_beams", 1)
        r = model.generate(torch.tensor([[BOS]]), **kw)
        hyps = []
        for k, seq in enumerate(r.sequences.tolist()):
            toks = seq[1:]
            if EOS in toks:
                toks = toks[:toks.index(EOS)]
            score = float(r.sequences_scores[k]) if kw["num_beams"] > 1 else None
            hyps.append({"tokens": toks, "score": score})
        out.append(hyps)
    return out


def warp_cases():
    rows = torch.randn(4, V) * 2.0
    cases = []
    for name, warpers in [("temperature", [TemperatureLogitsWarper(0.7)]), ("top_k", [TopKLogitsWarper(5)]),
                          ("top_p", [TopPLogitsWarper(0.8)]),
                          ("all", [TemperatureLogitsWarper(1.3), TopKLogitsWarper(6), TopPLogitsWarper(0.6)])]:
        x = rows.clone()
        for w in warpers:
            x = w(None, x)
        cases.append({"name": name, "out": [[None if v == float("-inf") else v for v in row] for row in x.tolist()]})
    return rows.tolist(), cases


rows, warps = warp_cases()
fixture = {
    "vocab": V, "steps": STEPS, "bos": BOS, "eos": EOS,
    "W1": W1.tolist(), "W2": W2.tolist(), "U": U.tolist(), "R": R.tolist(),
    "cases": [{"name": n, "options": o, "want": run(o)} for n, o in CASES],
    "warp_rows": rows, "warps": warps,
}
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "decoding.json")
with open(path, "w") as f:
    json.dump(fixture, f, separators=(",", ":"))
print("wrote", path)
for c in fixture["cases"]:
    print(c["name"], [[h["tokens"] for h in hs] for hs in c["want"]][:1])
