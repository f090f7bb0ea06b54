// attn/models/decoding.h — greedy (argmax, as in the lecture) and beam search over any model that
// extends a batch of prefixes one token at a time.
//
//   auto dec = translator.start_decoding(src);                           // src: (N, S) token ids
//   auto greedy = attn::models::greedy_decode(*dec, {.max_len = 64});    // N token sequences
//   auto dec2 = translator.start_decoding(src);
//   auto nbest = attn::models::beam_search(*dec2, {.beam_size = 5, .length_penalty = 1.0, .n_best = 3});
#pragma once
#include <cstdint>
#include <vector>

#include "attn/tensor.h"

namespace attn::models {

// Rows are the prefixes being extended (N sentences, or N x beam in beam search).
class IncrementalDecoder {
 public:
  virtual ~IncrementalDecoder() = default;
  virtual int64_t rows() const = 0;
  // tokens: (rows) int64, the last token of each prefix; returns log-probabilities (rows, V) float.
  virtual Tensor step(const Tensor& tokens) = 0;
  // Keeps rows[i] as new row i (reorders, duplicates or drops rows, e.g. when beams are selected).
  virtual void select_rows(const std::vector<int64_t>& rows) = 0;
  virtual int64_t bos_id() const = 0;
  virtual int64_t eos_id() const = 0;
};

struct GreedyOptions {
  int64_t max_len = 128;  // tokens generated at most (EOS included)
};
// Returns each sentence's tokens without BOS and without the final EOS.
std::vector<std::vector<int64_t>> greedy_decode(IncrementalDecoder& dec, const GreedyOptions& o = {});

struct BeamSearchOptions {
  int64_t beam_size = 4;
  double length_penalty = 1.0;  // score = sum log p / len^length_penalty (len counts EOS); 0 = raw sum
  int64_t n_best = 1;           // hypotheses returned per sentence (<= beam_size)
  int64_t max_len = 128;
};
struct Hypothesis {
  std::vector<int64_t> tokens;  // without BOS/EOS
  double log_prob = 0;          // sum of token log-probabilities (EOS included when finished)
  double score = 0;             // length-normalised, what the search ranks by
  bool finished = false;        // ended with EOS (else cut at max_len)
};
// Per sentence, the n_best hypotheses by score, best first. Batched: all sentences advance together.
std::vector<std::vector<Hypothesis>> beam_search(IncrementalDecoder& dec, const BeamSearchOptions& o = {});

}  // namespace attn::models
