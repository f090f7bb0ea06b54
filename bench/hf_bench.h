// bench/hf_bench.h — attn_bench's Hugging Face model workloads (twins: bench/hf_bench.py).
//
//   attn::bench::Job job = attn::bench::gpt2_generate();   // a kWorkloads row of attn_bench.cc
//   double gbs = attn::bench::read_bandwidth_gbs(model.parameters());   // streaming reads, all threads
#pragma once
#include <vector>

#include "attn/tensor.h"
#include "bench_job.h"

namespace attn::bench {

// all-MiniLM-L6-v2 (sentence-transformers' pipeline) embedding 256 sentences x 128 tokens, batches of 32.
Job minilm_embed(bool bf16 = false);
// One full fine-tuning step of MiniLM + mean pooling + linear head: batch 32 x 128, AdamW.
Job minilm_finetune_step(bool bf16 = false);
// GPT-2 at the 124M shape, randomly initialised: batch 1, 16-token prompt, 64 greedy tokens, KV cache.
Job gpt2_generate();
// GB/s at which the OpenMP threads sum up these float32 tensors (contiguous), best of 3 passes: the
// memory-bandwidth ceiling of decoding, which streams the same weights once per token. Reading the
// model's own weights costs no extra memory and sees the caches exactly as decoding does.
double read_bandwidth_gbs(const std::vector<Tensor>& tensors);

}  // namespace attn::bench
