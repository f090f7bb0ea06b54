#!/usr/bin/env python3
"""Fixtures for the Hugging Face checkpoint reader (tests/test_hf_checkpoint.cc, test_pickle_reader.cc).

    ~/.cache/attn/venv/bin/python tests/make_hf_fixtures.py      # writes tests/fixtures/hf/

Tiny randomly initialised BertModel and GPT2LMHeadModel saved by save_pretrained (safetensors, single
and sharded with a small max_shard_size), and as pytorch_model.bin. transformers 5 no longer writes
.bin files (safe_serialization=False is ignored), so the .bin forms are written as transformers 4's
save_pretrained(safe_serialization=False) wrote them: torch.save of the same state dict (shards
pytorch_model-0000i-of-0000n.bin + pytorch_model.bin.index.json); each is checked to load back into
transformers. Plus: a torch.save file of strided / offset / shared / every-dtype tensors with their
expected values, hostile pickles that must be refused, and a legacy (pre-zip) torch.save file.
"""
import io
import json
import os
import pickle
import shutil
import struct
import zipfile

import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertModel, GPT2Config, GPT2LMHeadModel

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "hf")


def save_bin(model, d, shards=1):
    """What transformers 4 wrote for safe_serialization=False: the save_pretrained keys, torch.save."""
    from safetensors import safe_open
    keys = []
    for f in sorted(os.listdir(d)):
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(d, f), "pt") as s:
                keys += list(s.keys())
            os.remove(os.path.join(d, f))
    if os.path.exists(os.path.join(d, "model.safetensors.index.json")):
        os.remove(os.path.join(d, "model.safetensors.index.json"))
    sd = model.state_dict()
    keys = sorted(keys)
    if shards == 1:
        torch.save({k: sd[k] for k in keys}, os.path.join(d, "pytorch_model.bin"))
        return
    weight_map, total = {}, 0
    for i in range(shards):
        name = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        part = {k: sd[k] for k in keys[i::shards]}
        torch.save(part, os.path.join(d, name))
        for k, t in part.items():
            weight_map[k] = name
            total += t.numel() * t.element_size()
    with open(os.path.join(d, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)


def check_loads(cls, d, model):
    again = cls.from_pretrained(d)
    ref = model.state_dict()
    for k, v in again.state_dict().items():
        assert torch.equal(v.float(), ref[k].float()), (d, k)


def models():
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=40, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=16, max_position_embeddings=16, type_vocab_size=2))
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=40, n_embd=8, n_layer=2, n_head=2, n_positions=16,
                                 bos_token_id=39, eos_token_id=39))
    for m in (bert, gpt2):
        with torch.no_grad():  # LayerNorm weights and biases away from 1 and 0, so a mix-up shows
            for n, p in m.named_parameters():
                if "ln" in n or "LayerNorm" in n:
                    p.add_(torch.randn_like(p) * 0.1)
        m.eval()
    return bert, gpt2


def write_models():
    bert, gpt2 = models()
    for name, model, cls in (("bert", bert, BertModel), ("gpt2", gpt2, GPT2LMHeadModel)):
        model.save_pretrained(os.path.join(OUT, f"{name}_st"))
        model.save_pretrained(os.path.join(OUT, f"{name}_bin"))
        save_bin(model, os.path.join(OUT, f"{name}_bin"))
        check_loads(cls, os.path.join(OUT, f"{name}_bin"), model)
    bert.save_pretrained(os.path.join(OUT, "bert_st_sharded"), max_shard_size="4KB")
    bert.save_pretrained(os.path.join(OUT, "bert_bin_sharded"))
    save_bin(bert, os.path.join(OUT, "bert_bin_sharded"), shards=3)
    check_loads(BertModel, os.path.join(OUT, "bert_bin_sharded"), bert)
    # Half precision on disk: fp16 safetensors (BERT) and a bf16 .bin (GPT-2); the reader gives fp32.
    bert.half().save_pretrained(os.path.join(OUT, "bert_st_fp16"))
    gpt2.to(torch.bfloat16).save_pretrained(os.path.join(OUT, "gpt2_bin_bf16"))
    save_bin(gpt2, os.path.join(OUT, "gpt2_bin_bf16"))


def write_strided():
    g = torch.Generator().manual_seed(1)
    big = torch.randn(4, 5, generator=g)
    tensors = {
        "big": big,
        "transposed": big.t(),                  # strides (1, 5), shares big's storage
        "slice": big[1:3, 2:],                  # storage offset 7, strides (5, 1)
        "row": big[2],                          # offset 10, contiguous
        "expanded": torch.arange(3.0).expand(2, 3),  # stride 0
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "f64": torch.randn(3, generator=g, dtype=torch.float64),
        "f16": torch.randn(2, 3, generator=g).half(),
        "bf16": torch.randn(2, 3, generator=g).bfloat16(),
        "f16_t": torch.randn(3, 2, generator=g).half().t(),
        "i64": torch.tensor([-3, 0, 1 << 40]),
        "i32": torch.tensor([-7, 8], dtype=torch.int32),
        "i16": torch.tensor([-300, 301], dtype=torch.int16),
        "i8": torch.tensor([-100, 101], dtype=torch.int8),
        "u8": torch.tensor([0, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "param": torch.nn.Parameter(torch.randn(2, 2, generator=g)),
    }
    torch.save(tensors, os.path.join(OUT, "strided.bin"))
    widen = {torch.float16: torch.float32, torch.int16: torch.int32, torch.int8: torch.int32}
    expected = {k: v.detach().to(widen.get(v.dtype, v.dtype)).contiguous().clone() for k, v in tensors.items()}
    save_file(expected, os.path.join(OUT, "strided_expected.safetensors"))
    # Same tensors, pickle protocol 4 (FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL)
    torch.save({k: tensors[k] for k in ("big", "slice", "f16")}, os.path.join(OUT, "protocol4.bin"), pickle_protocol=4)


class RunsShell:
    def __reduce__(self):
        return (os.system, ("echo attn-was-tricked",))


class EvalsText:
    def __reduce__(self):
        return (eval, ("1 + 1",))


def zip_with_pickle(path, pkl):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")


def write_hostile():
    w = torch.ones(2)
    torch.save({"w": w, "x": RunsShell()}, os.path.join(OUT, "hostile_os_system.bin"))
    torch.save({"w": w, "x": EvalsText()}, os.path.join(OUT, "hostile_eval_protocol4.bin"), pickle_protocol=4)
    # INST 'os system' with a MARKed argument: the protocol-0 way to call anything
    text = b"echo attn-was-tricked"
    zip_with_pickle(os.path.join(OUT, "hostile_inst.bin"),
                    b"\x80\x02(X" + struct.pack("<I", len(text)) + text + b"ios\nsystem\n.")
    # A plain pickle of the same object: not a torch zip at all
    with open(os.path.join(OUT, "hostile_plain_pickle.bin"), "wb") as f:
        pickle.dump({"x": RunsShell()}, f, protocol=2)
    torch.save({"w": w}, os.path.join(OUT, "legacy.bin"), _use_new_zipfile_serialization=False)


def main():
    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    write_models()
    write_strided()
    write_hostile()
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT} ({total // 1024} KB)")


if __name__ == "__main__":
    main()
