// attn/data/parallel_text.h — parallel text for translation: two line-aligned files tokenised with
// SentencePiece, and batches by token count with length bucketing (seeded, resumable).
//
//   text::SentencePiece sp("runs/spm.model");
//   auto corpus = data::ParallelCorpus::load("train.en", "train.es", sp, {.max_len = 128});
//   data::TokenBatcher batches(corpus, {.max_tokens = 4096, .seed = 1});
//   for (int64_t b = 0; b < batches.num_batches(epoch); ++b) {
//     data::TranslationBatch batch = batches.get(epoch, b);   // src (N, S), tgt_in/tgt_out (N, T)
//   }
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "attn/tensor.h"
#include "attn/text/sentencepiece.h"

namespace attn::data {

struct ParallelTextOptions {
  int64_t max_len = 256;  // tokens per side (EOS included); longer pairs are dropped and counted
};

// Empty lines (on either side) and over-long pairs are dropped and counted, never an error; a
// different number of lines in the two files is an error naming both files.
struct ParallelCorpus {
  std::vector<std::vector<int32_t>> src, tgt;  // token ids, no BOS/EOS
  std::vector<int64_t> line;                   // 1-based line number of each kept pair
  int64_t dropped_empty = 0, dropped_long = 0;
  int64_t size() const { return int64_t(src.size()); }
  static ParallelCorpus load(const std::string& src_path, const std::string& tgt_path, const text::SentencePiece& sp,
                             const ParallelTextOptions& o = {});
  static ParallelCorpus from_lines(const std::vector<std::string>& src, const std::vector<std::string>& tgt,
                                   const text::SentencePiece& sp, const ParallelTextOptions& o = {});
};

std::vector<std::string> read_lines(const std::string& path);  // strips '\r'; throws naming the file

struct TranslationBatch {
  Tensor src;      // (N, S) int64, pad_id padded, EOS at the end of each sentence
  Tensor tgt_in;   // (N, T) BOS y1 .. yn
  Tensor tgt_out;  // (N, T) y1 .. yn EOS
  int64_t src_tokens = 0, tgt_tokens = 0;  // real (non-pad) tokens
  std::vector<int64_t> indices;            // corpus indices of the rows
};

struct TokenBatchOptions {
  int64_t max_tokens = 4096;   // padded tokens per batch, counting both sides: N * (S + T)
  bool shuffle = true;
  uint64_t seed = 0;
  int64_t bucket_size = 4096;  // pairs sorted by length together before batching
  int64_t pad_id = 0, bos_id = 2, eos_id = 3;
};

// Epoch e: pairs in a Philox permutation of (seed, e), cut into buckets of bucket_size pairs, each
// sorted by length and greedily cut into batches under max_tokens; batch order is then shuffled.
// A batch depends only on (corpus, options, epoch, index).
class TokenBatcher {
 public:
  TokenBatcher(const ParallelCorpus& corpus, const TokenBatchOptions& o);
  int64_t num_batches(int64_t epoch) const;
  TranslationBatch get(int64_t epoch, int64_t index) const;
  const TokenBatchOptions& options() const { return o_; }
  static TranslationBatch collate(const ParallelCorpus& corpus, const std::vector<int64_t>& indices,
                                  const TokenBatchOptions& o);

 private:
  const std::vector<std::vector<int64_t>>& plan(int64_t epoch) const;
  const ParallelCorpus& corpus_;
  TokenBatchOptions o_;
  mutable int64_t planned_epoch_ = -1;
  mutable std::vector<std::vector<int64_t>> batches_;
};

}  // namespace attn::data
