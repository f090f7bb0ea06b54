#!/usr/bin/env python3
"""tests/make_lora_fixtures.py — peft's LoRA on the tiny BERT fixture, for tests/test_lora.cc (run with the
venv's python; CI reads the committed files only).

    ~/.cache/attn/venv/bin/python tests/make_lora_fixtures.py

Reads tests/fixtures/hf_models/bert_tiny (tests/make_hf_model_fixtures.py). Writes tests/fixtures/hf_models/:
  bert_tiny_lora/          peft's save_pretrained: adapter_model.safetensors + adapter_config.json
                           (r 4, alpha 8, targets query and value; B randomised so the branch is not zero)
  bert_tiny_lora.safetensors   inputs, logits of the adapted model, loss, grad/<key> of every lora_A / lora_B
                           weight (peft's saved key), and logits after merge_and_unload
"""
import json
import os
import shutil

import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "hf_models")


def main():
    from peft import LoraConfig, get_peft_model
    from transformers import BertForSequenceClassification
    torch.manual_seed(1)
    base = BertForSequenceClassification.from_pretrained(os.path.join(OUT, "bert_tiny")).eval()
    cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "value"])
    model = get_peft_model(base, cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.3)
    path = os.path.join(OUT, "bert_tiny_lora")
    shutil.rmtree(path, ignore_errors=True)
    model.save_pretrained(path)
    if os.path.exists(os.path.join(path, "README.md")):
        os.remove(os.path.join(path, "README.md"))
    cfg_path = os.path.join(path, "adapter_config.json")
    with open(cfg_path) as f:
        saved = json.load(f)
    saved["base_model_name_or_path"] = "bert_tiny"  # not this machine's absolute path
    with open(cfg_path, "w") as f:
        json.dump(saved, f, indent=2, sort_keys=True)
    ids = torch.randint(1, 64, (3, 6))
    mask = torch.ones(3, 6, dtype=torch.long)
    mask[2, 4:] = 0
    ids[2, 4:] = 0
    labels = torch.tensor([2, 0, 1])
    out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    t = {"input_ids": ids, "attention_mask": mask, "labels": labels, "logits": out.logits,
         "loss": out.loss.reshape(1)}
    for name, p in model.named_parameters():
        if "lora_" in name:  # peft's in-memory name -> its saved key (adapter name dropped)
            t["grad/" + name.replace(".default", "")] = p.grad
    merged = model.merge_and_unload()
    with torch.no_grad():
        t["merged_logits"] = merged(input_ids=ids, attention_mask=mask).logits
    save_file({k: v.detach().contiguous().clone() for k, v in t.items()}, os.path.join(OUT, "bert_tiny_lora.safetensors"))


if __name__ == "__main__":
    main()
