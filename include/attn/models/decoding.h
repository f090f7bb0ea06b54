// attn/models/decoding.h — greedy (argmax, as in the lecture), sampling and beam search over any model
// that extends a batch of prefixes one token at a time, with transformers' generate options.
//
//   auto dec = translator.start_decoding(src);                           // src: (N, S) token ids
//   auto greedy = attn::models::greedy_decode(*dec, {.max_len = 64});    // N token sequences
//   auto dec2 = translator.start_decoding(src);
//   auto nbest = attn::models::beam_search(*dec2, {.beam_size = 5, .length_penalty = 1.0, .n_best = 3,
//                                                  .logits = {.no_repeat_ngram_size = 3}});
//   auto dec3 = translator.start_decoding(src);
//   auto sampled = attn::models::greedy_decode(*dec3, {.max_len = 64, .sample = true,
//                                                      .sampling = {.temperature = 0.8, .top_p = 0.9, .seed = 7}});
//
// Semantics are those of transformers' generate (v5): the logits processors RepetitionPenalty,
// NoRepeatNGram and MinNewTokensLength (in that order) see the decoder input so far (BOS + generated);
// greedy and sampling apply them to the raw logits, beam search to the log-probabilities (which then
// accumulate into the beam scores); sampling then applies Temperature, TopK, TopP. Beam search keeps
// the 2*beam best continuations, finishes only those ranked within the beam, and ranks finished
// hypotheses by sum_logprobs / generated_len^length_penalty (EOS counted), as BeamSearch in transformers.
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
  // As step, but the raw logits (rows, V) before log-softmax, which greedy and sampling processors see
  // (the repetition penalty depends on the sign of a logit). Models that only have log-probabilities
  // may return them (they are logits shifted by a per-row constant).
  virtual Tensor step_logits(const Tensor& tokens) { return step(tokens); }
  // Keeps rows[i] as new row i (reorders, duplicates or drops rows, e.g. when beams are selected).
  virtual void select_rows(const std::vector<int64_t>& rows) = 0;
  virtual int64_t bos_id() const = 0;
  virtual int64_t eos_id() const = 0;
};

// transformers' logits processors (the defaults change nothing).
struct LogitsOptions {
  double repetition_penalty = 1.0;   // RepetitionPenalty: a seen token's score x / p if x > 0, else x * p (> 0)
  int64_t no_repeat_ngram_size = 0;  // NoRepeatNGram: no n-gram of this size twice in BOS + output (0: off)
  int64_t min_len = 0;               // MinNewTokensLength: EOS banned before this many tokens were generated
  std::vector<int64_t> min_lens = {};  // per sentence, replaces min_len when not empty (size N)
};
// Checks ranges; throws std::invalid_argument naming the option.
void check_logits_options(const LogitsOptions& o);
// Applies the processors to one row of V scores. history: BOS + the tokens generated so far.
void process_logits(float* scores, int64_t V, const std::vector<int64_t>& history, int64_t min_len, int64_t eos_id,
                    const LogitsOptions& o);

struct SamplingOptions {
  double temperature = 1.0;  // Temperature: scores / t (> 0)
  int64_t top_k = 0;         // TopK: keep the k best (ties kept); 0: off
  double top_p = 1.0;        // TopP: keep the smallest set whose probability exceeds p, in (0, 1]
  uint64_t seed = 0;         // the same seed gives the same samples
};
void check_sampling_options(const SamplingOptions& o);
// Temperature, TopK and TopP on one row; removed tokens get -inf.
void warp_for_sampling(float* scores, int64_t V, const SamplingOptions& o);

struct GreedyOptions {
  int64_t max_len = 128;              // tokens generated at most (EOS included)
  std::vector<int64_t> max_lens = {};  // per sentence (each capped by max_len), when not empty (size N)
  LogitsOptions logits = {};
  bool sample = false;                // draw from softmax(warped scores) instead of argmax
  SamplingOptions sampling = {};
  // When set: each sentence's sum of the model's token log-probabilities (EOS included when reached),
  // before processors and warpers.
  std::vector<double>* log_probs = nullptr;
};
// Returns each sentence's tokens without BOS and without the final EOS.
std::vector<std::vector<int64_t>> greedy_decode(IncrementalDecoder& dec, const GreedyOptions& o = {});

// transformers' early_stopping: when a sentence's beam search ends.
enum class EarlyStopping {
  WhenBeamFull,  // True: once beam_size hypotheses are finished (attn's default)
  Heuristic,     // False (transformers' default): once the best live beam, normalised at its current length, cannot beat the worst finished one
  Never,         // "never": as Heuristic, but with a positive length penalty normalised at max_len
};

struct BeamSearchOptions {
  int64_t beam_size = 4;
  double length_penalty = 1.0;  // score = sum log p / len^length_penalty (len counts EOS); 0 = raw sum
  int64_t n_best = 1;           // hypotheses returned per sentence (<= beam_size)
  int64_t max_len = 128;
  std::vector<int64_t> max_lens = {};  // per sentence (each capped by max_len), when not empty (size N)
  LogitsOptions logits = {};
  EarlyStopping early_stopping = EarlyStopping::WhenBeamFull;
};
struct Hypothesis {
  std::vector<int64_t> tokens;  // without BOS/EOS
  double log_prob = 0;          // sum of (processed) token log-probabilities (EOS included when finished)
  double score = 0;             // length-normalised, what the search ranks by
  bool finished = false;        // ended with EOS (else cut at max_len)
};
// Per sentence, the n_best hypotheses by score, best first. Batched: all sentences advance together.
std::vector<std::vector<Hypothesis>> beam_search(IncrementalDecoder& dec, const BeamSearchOptions& o = {});

}  // namespace attn::models
