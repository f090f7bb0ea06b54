"""run.py's notes for the Hugging Face model rows (bench/hf_bench.cc, bench/hf_bench.py).

    note = hf_notes.gpt2_generate(attn_result, peer_result, params_note)
"""


def minilm_embed(a, p, params_note):
    peer = (p or {}).get("peer", "pytorch")
    how = ("ONNX Runtime " + p.get("onnxruntime", "") + " on the torch.onnx export, intra_op_num_threads = threads"
           if peer == "onnxruntime" else "sentence-transformers under inference_mode")
    note = (params_note(a, p) + "; all-MiniLM-L6-v2, 256 sentences x 128 tokens in batches of 32, fp32; peer: "
            + how)
    mflop = a.get("mflop_per_token")
    if mflop:  # effective rate: the model's FLOPs over the wall time (GEMMs and everything around them)
        note += f"; {mflop:.1f} MFLOP/token: attn {a['value'] * 128 * mflop / 1e3:.0f} GFLOP/s"
        if p and p.get("value"):
            note += f", peer {p['value'] * 128 * mflop / 1e3:.0f} GFLOP/s"
    return note


def minilm_finetune_step(a, p, params_note):
    return (params_note(a, p) + "; MiniLM encoder + mean pooling + Linear(384, 2), train mode, batch 32 x 128, "
            "AdamW (peer: transformers' BertModel, fused AdamW)")


def gpt2_generate(a, p, params_note):
    """The token rate as a share of what memory bandwidth allows: attn_bench's probe streams the model's
    weights before each attn repeat; ceiling = that bandwidth / weight bytes per token."""
    note = (params_note(a, p) + "; GPT-2 124M shape, random weights, batch 1, 16-token prompt + 64 greedy "
            "tokens, KV cache (peer: transformers' generate)")
    ceiling, per_token = a.get("probe_median"), a.get("weight_bytes_per_token")
    if ceiling and per_token:
        note += (f"; weights {per_token / 1e6:.0f} MB per token, streamed at {ceiling * per_token / 1e9:.1f} GB/s "
                 f"(median before each attn repeat) = ceiling {ceiling:.1f} tokens/s; share of that bandwidth: "
                 f"attn {100 * a['share_of_ceiling']:.0f}%"
                 + (f", peer {100 * p['share_of_ceiling']:.0f}%" if p and "share_of_ceiling" in p else ""))
    return note
