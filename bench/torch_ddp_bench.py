#!/usr/bin/env python3
"""The `pytorch-ddp` peer of make bench's transformer_train_step_dp2 (bench/dp_run.py): torch_bench.py's
translator training step under DistributedDataParallel, gloo backend, one thread per process.

    torchrun --nproc_per_node 2 bench/torch_ddp_bench.py [--steps 5] [--warmup 2]

Each rank trains on its own 32 x (32 + 32)-token batch (as attn_dp_bench does); DDP all-reduces the
gradients in its buckets (25 MiB, reverse order) from autograd hooks while backward runs. Rank 0 prints
one JSON line: value = tokens of all ranks per second, from the median over steps of the slowest rank's
step time.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_bench  # noqa: E402  (the same model, batch shape and optimizer as the one-process peer)
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = torch_bench.bench_translator()
    model.train()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    V = model.embedding.num_embeddings
    torch.manual_seed(1 + rank)
    n, s, t = torch_bench.SENTENCES, torch_bench.SRC_LEN, torch_bench.TGT_LEN
    src, tgt_in, tgt_out = (torch.randint(4, V, (n, s)), torch.randint(4, V, (n, t)), torch.randint(4, V, (n, t)))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-9, fused=True)
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        logits = ddp(src, tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=model.pad_id, label_smoothing=0.1)
        loss.backward()
        opt.step()
        opt.zero_grad()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    slowest = torch.tensor(times, dtype=torch.float64)
    dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
    if rank == 0:
        median = sorted(slowest.tolist())[len(times) // 2]
        print(json.dumps({"value": world * (src.numel() + tgt_in.numel()) / median, "unit": "tokens/s",
                          "ranks": world, "threads": a.threads, "median_s": median,
                          "parameters": torch_bench.count_parameters(model)}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
