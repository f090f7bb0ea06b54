#!/usr/bin/env python3
"""PyTorch fixtures for the Transformer modules: tests/fixtures/transformer.safetensors.

    /opt/attn-venv/bin/python tests/make_transformer_fixtures.py    (needs torch, safetensors)

For each case: the module's state_dict ("<case>/param/<name>"), inputs ("<case>/in/<name>"), the
output ("<case>/out"), a random upstream gradient ("<case>/grad_out"), the gradients of float inputs
("<case>/grad_in/<name>") and of every parameter ("<case>/grad_param/<name>"). Dropout is 0 and the
modules are in training mode (PyTorch's inference fast path changes outputs at padded positions).
The case list with options is in the file's metadata under "cases" (JSON).
"""
import json
import os

import torch
from safetensors.torch import save_file

torch.manual_seed(0)
torch.set_default_dtype(torch.float32)
tensors, cases = {}, []


def pad_mask(N, S, lengths):
    m = torch.zeros(N, S, dtype=torch.bool)
    for i, l in enumerate(lengths):
        m[i, l:] = True
    return m


def record(name, module, inputs, run, opts):
    module.train()
    for k, v in module.state_dict().items():
        tensors[f"{name}/param/{k}"] = v.detach().clone().contiguous()
    leaf = {}
    for k, v in inputs.items():
        if v.dtype.is_floating_point:
            v = v.detach().clone().requires_grad_(True)
        leaf[k] = v
        tensors[f"{name}/in/{k}"] = v.detach().clone().contiguous()
    out = run(module, leaf)
    g = torch.randn(out.shape)
    out.backward(g)
    tensors[f"{name}/out"] = out.detach().contiguous()
    tensors[f"{name}/grad_out"] = g
    for k, v in leaf.items():
        if v.dtype.is_floating_point:
            tensors[f"{name}/grad_in/{k}"] = v.grad.detach().contiguous()
    for k, p in module.named_parameters():
        if p.grad is not None:  # absent: no gradient flows to it (e.g. out_proj when only weights are used)
            tensors[f"{name}/grad_param/{k}"] = p.grad.detach().contiguous()
    cases.append(dict(name=name, **opts))


E, H, L, S, N = 16, 4, 5, 7, 3
# ---- MultiheadAttention
mha = torch.nn.MultiheadAttention(E, H, dropout=0.0)
x = torch.randn(L, N, E)
record("mha_self_padding", mha, {"x": x, "kpm": pad_mask(N, L, [5, 3, 4])},
       lambda m, i: m(i["x"], i["x"], i["x"], key_padding_mask=i["kpm"], need_weights=False)[0],
       dict(kind="mha", embed_dim=E, num_heads=H, self_attention=True, key_padding_mask=True))
mha = torch.nn.MultiheadAttention(E, H, dropout=0.0)
causal = torch.nn.Transformer.generate_square_subsequent_mask(L).isinf()  # bool, True above the diagonal
record("mha_self_causal", mha, {"x": x, "mask": causal},
       lambda m, i: m(i["x"], i["x"], i["x"], attn_mask=i["mask"], need_weights=False)[0],
       dict(kind="mha", embed_dim=E, num_heads=H, self_attention=True, attn_mask=True))
mha = torch.nn.MultiheadAttention(E, H, dropout=0.0)
q, kv = torch.randn(L, N, E), torch.randn(S, N, E)
record("mha_cross_weights", mha, {"q": q, "kv": kv, "kpm": pad_mask(N, S, [7, 2, 6])},
       lambda m, i: m(i["q"], i["kv"], i["kv"], key_padding_mask=i["kpm"], need_weights=True)[1],
       dict(kind="mha_weights", embed_dim=E, num_heads=H, key_padding_mask=True))
mha = torch.nn.MultiheadAttention(E, H, dropout=0.0, batch_first=True)
qb, kb, vb = torch.randn(N, L, E), torch.randn(N, S, E), torch.randn(N, S, E)
record("mha_batch_first_qkv", mha, {"q": qb, "k": kb, "v": vb},
       lambda m, i: m(i["q"], i["k"], i["v"], need_weights=False)[0],
       dict(kind="mha_qkv", embed_dim=E, num_heads=H, batch_first=True))

# ---- layers
FF = 24
for norm_first, act in [(False, "relu"), (True, "gelu")]:
    layer = torch.nn.TransformerEncoderLayer(E, H, FF, dropout=0.0, activation=act, norm_first=norm_first)
    record(f"enc_layer_{'pre' if norm_first else 'post'}_{act}", layer, {"x": x, "kpm": pad_mask(N, L, [5, 2, 4])},
           lambda m, i: m(i["x"], src_key_padding_mask=i["kpm"]),
           dict(kind="enc_layer", d_model=E, nhead=H, dim_feedforward=FF, norm_first=norm_first, activation=act))
    layer = torch.nn.TransformerDecoderLayer(E, H, FF, dropout=0.0, activation=act, norm_first=norm_first)
    tgt, mem = torch.randn(L, N, E), torch.randn(S, N, E)
    record(f"dec_layer_{'pre' if norm_first else 'post'}_{act}", layer,
           {"tgt": tgt, "mem": mem, "tgt_mask": causal, "mkpm": pad_mask(N, S, [7, 3, 5])},
           lambda m, i: m(i["tgt"], i["mem"], tgt_mask=i["tgt_mask"], memory_key_padding_mask=i["mkpm"]),
           dict(kind="dec_layer", d_model=E, nhead=H, dim_feedforward=FF, norm_first=norm_first, activation=act))

# ---- full nn.Transformer
model = torch.nn.Transformer(d_model=E, nhead=H, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=FF,
                             dropout=0.0)
src, tgt = torch.randn(S, N, E), torch.randn(L, N, E)
record("transformer", model,
       {"src": src, "tgt": tgt, "tgt_mask": causal, "skpm": pad_mask(N, S, [7, 4, 6]), "tkpm": pad_mask(N, L, [5, 5, 3])},
       lambda m, i: m(i["src"], i["tgt"], tgt_mask=i["tgt_mask"], src_key_padding_mask=i["skpm"],
                      tgt_key_padding_mask=i["tkpm"], memory_key_padding_mask=i["skpm"]),
       dict(kind="transformer", d_model=E, nhead=H, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=FF))

# ---- positional encoding (values only)
pe = torch.zeros(50, E)
pos = torch.arange(0, 50, dtype=torch.float).unsqueeze(1)
div = torch.exp(torch.arange(0, E, 2).float() * (-torch.log(torch.tensor(10000.0)) / E))
pe[:, 0::2] = torch.sin(pos * div)
pe[:, 1::2] = torch.cos(pos * div)
tensors["positional_encoding/pe"] = pe

# ---- MultiheadAttention with Hugging Face BERT's layout: separate "query", "key", "value" Linear
# submodules, whose weights are the row blocks of PyTorch's in_proj_weight (last, so that the cases above
# keep their random draws)
mha = torch.nn.MultiheadAttention(E, H, dropout=0.0, batch_first=True)
xb = torch.randn(N, L, E)
record("mha_separate_qkv_self", mha, {"x": xb, "kpm": pad_mask(N, L, [5, 4, 2])},
       lambda m, i: m(i["x"], i["x"], i["x"], key_padding_mask=i["kpm"], need_weights=False)[0],
       dict(kind="mha", embed_dim=E, num_heads=H, batch_first=True, separate_qkv=True, key_padding_mask=True))
for part in ("param", "grad_param"):
    for packed, suffix in (("in_proj_weight", "weight"), ("in_proj_bias", "bias")):
        t = tensors.pop(f"mha_separate_qkv_self/{part}/{packed}")
        for name, block in zip(("query", "key", "value"), t.chunk(3)):
            tensors[f"mha_separate_qkv_self/{part}/{name}.{suffix}"] = block.contiguous()

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "transformer.safetensors")
save_file(tensors, out, metadata={"cases": json.dumps(cases), "torch": torch.__version__})
print("wrote", out, os.path.getsize(out), "bytes,", len(cases), "cases")
