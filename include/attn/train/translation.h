// attn/train/translation.h — train the Transformer translator on parallel text, translate with it.
//
//   attn::train::TranslationTrainOptions o{.train_src = "data/bible/train.en", .train_tgt = "data/bible/train.es",
//                                          .dev_src = "data/bible/dev.en", .dev_tgt = "data/bible/dev.es",
//                                          .out_dir = "runs/translate", .time_budget_s = 600};
//   attn::train::TranslationTrainResult r = attn::train::train_translator(o);   // resumes if out_dir has a checkpoint
//   attn::train::TranslationSession s = attn::train::TranslationSession::load("runs/translate");
//   std::vector<std::string> es = s.translate({"In the beginning God created the heavens."}, {.beam_size = 5});
//
// out_dir holds: spm.model (joint SentencePiece), config.json, checkpoint.safetensors (latest; model +
// Adam + step + RNG + data position), best.safetensors (best dev BLEU), metrics.jsonl, a TensorBoard
// event file and curves.png. Running again with the same out_dir resumes exactly where it stopped.
// The loop is attn::train::Trainer's (attn/train/trainer.h); Ctrl-C finishes the step and checkpoints.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "attn/models/translator.h"
#include "attn/text/sentencepiece.h"

namespace attn::train {

struct TranslationTrainOptions {
  std::string train_src, train_tgt;  // line-aligned parallel text
  std::string dev_src, dev_tgt;      // validation (loss, BLEU) and early stopping
  std::string out_dir = "runs/translate";
  int64_t vocab_size = 8000;         // joint SentencePiece vocabulary, trained on train_src + train_tgt
  models::TranslatorOptions model = {.d_model = 256, .nhead = 4, .num_encoder_layers = 3, .num_decoder_layers = 3,
                                     .dim_feedforward = 1024, .dropout = 0.1};
  int64_t max_len = 128;             // training pairs longer than this (tokens, per side) are skipped
  int64_t max_tokens = 4096;         // padded source+target tokens per batch
  double lr_factor = 1.0;            // paper schedule: factor * d_model^-0.5 * min(s^-0.5, s * warmup^-1.5)
  int64_t warmup_steps = 4000;
  double label_smoothing = 0.1;
  double clip_grad_norm = 1.0;       // 0: off
  int64_t max_steps = 0;             // 0: no limit
  int64_t max_epochs = 1000;
  double time_budget_s = 0;          // wall-clock budget of this invocation; 0: no limit
  int64_t eval_every = 1000;         // steps between validations (and checkpoints)
  int64_t eval_sentences = 300;      // dev sentences (evenly spaced over the dev set) decoded greedily for BLEU
  int64_t patience = 10;             // stop after this many validations without a better dev BLEU
  uint64_t seed = 1;
  bool resume = true;
  int64_t log_every = 50;
  bool progress = true;
  bool handle_signals = true;        // SIGINT/SIGTERM: finish the step, checkpoint, return (result.signal)
  // "fp32", or "bf16": each step's forward and loss under attn::Autocast (bf16 GEMMs, fp32 master
  // weights; validation stays fp32). Recorded in config.json; a resumed run keeps the recorded one.
  std::string precision = "fp32";
};

// "bf16" where the CPU multiplies bf16 natively (AMX or AVX512_BF16: attn info's bf16_gemm), else "fp32".
std::string default_training_precision();

struct TranslationTrainResult {
  int64_t steps = 0;
  int64_t epochs_done = 0;
  double dev_bleu = 0, dev_chrf = 0, dev_loss = 0;  // at the last validation
  double best_dev_bleu = 0;
  double seconds = 0;                                // this invocation
  std::string checkpoint, best_checkpoint;
  std::string precision;                             // the one the run used (config.json's on resume)
  bool stopped_early = false;
  int signal = 0;                                    // SIGINT or SIGTERM that stopped the run (0: none)
};

TranslationTrainResult train_translator(const TranslationTrainOptions& o);

// Decoding options of TranslationSession (attn translate's flags), as in CTranslate2 and transformers.
struct TranslateOptions {
  int64_t beam_size = 4;       // 1: greedy (argmax), or sampling with `sample`
  double length_penalty = 1.0; // beam score = sum log p / len^length_penalty (len counts EOS)
  int64_t n_best = 1;          // hypotheses per sentence (<= beam_size)
  // Output length limits per sentence, from its source length S (tokens, EOS included): at most
  // int(max_len_a * S) + max_len_b tokens (EOS included), capped by max_len (0: no cap) and the
  // model's positions; at least int(min_len_a * S) + min_len_b tokens before EOS may come.
  double max_len_a = 1.5;
  int64_t max_len_b = 10;
  int64_t max_len = 0;
  double min_len_a = 0.0;
  int64_t min_len_b = 0;
  int64_t no_repeat_ngram_size = 0;  // 0: off
  double repetition_penalty = 1.0;   // 1: off
  models::EarlyStopping early_stopping = models::EarlyStopping::WhenBeamFull;
  bool sample = false;               // random sampling (beam_size 1) with `sampling`
  models::SamplingOptions sampling = {};
  int64_t batch_size = 32;     // sentences decoded together, sorted by length (output in input order)
  int64_t batch_tokens = 0;    // > 0: also at most this many padded source tokens per batch
  bool split_long = true;      // sources beyond the model's positions: translated in pieces (else truncated)
  bool progress = false;       // a progress bar on stderr (sentences)
};
// Throws std::invalid_argument naming the option (and its attn translate flag) when out of range.
void check_translate_options(const TranslateOptions& o);

// Text <-> token ids for a session: a run directory's joint SentencePiece model (ids are its piece
// ids), or a Hugging Face Marian directory's source.spm/target.spm with vocab.json's ids (models/marian.h).
class TranslationTokenizer {
 public:
  virtual ~TranslationTokenizer() = default;
  virtual int vocab_size() const = 0;
  virtual std::vector<int> encode_source(const std::string& line) const = 0;  // no EOS
  virtual std::vector<int> encode_target(const std::string& line) const = 0;
  virtual std::string decode_target(const std::vector<int>& ids) const = 0;  // special ids skipped
  virtual std::string piece(int id) const = 0;                                // for picture labels
};

// A trained model with its tokenizer, ready to translate.
class TranslationSession {
 public:
  // Loads out_dir/spm.model, out_dir/config.json and the checkpoint (best.safetensors if present).
  static TranslationSession load(const std::string& out_dir, const std::string& checkpoint = "");
  TranslationSession(std::shared_ptr<models::Translator> model, std::shared_ptr<text::SentencePiece> sp);
  TranslationSession(std::shared_ptr<models::Translator> model, std::shared_ptr<TranslationTokenizer> tokenizer);
  // One output per input line, always; an empty line gives an empty translation; a source line longer
  // than the model's positions is translated in pieces joined by a space (or truncated, split_long
  // false), and a line with invalid UTF-8 is translated without the invalid bytes: both counted in
  // truncated() / warnings() with their line numbers (1-based).
  std::vector<std::string> translate(const std::vector<std::string>& lines, const TranslateOptions& o = {});
  // n-best lists with scores.
  std::vector<std::vector<std::pair<std::string, double>>> translate_nbest(const std::vector<std::string>& lines,
                                                                           const TranslateOptions& o);
  // PNG heat maps for one sentence and its translation with `o` (the chosen, best hypothesis): every
  // layer and head, and each layer's mean over heads, on a fixed 0-1 scale; returns the files written.
  std::vector<std::string> write_attention_pictures(const std::string& source, const std::string& dir,
                                                    const TranslateOptions& o = {.beam_size = 1});
  models::Translator& model() { return *model_; }
  TranslationTokenizer& tokenizer() { return *tok_; }
  int64_t truncated() const { return truncated_; }
  // What the last translate call found in its input ("line 7: invalid UTF-8 ..."), one message each.
  const std::vector<std::string>& warnings() const { return warnings_; }
  // Set by load(): how the checkpoint was chosen when it was not best.safetensors ("" otherwise).
  const std::string& checkpoint_note() const { return checkpoint_note_; }

 private:
  struct Segment;  // one decoded source: a line, or a piece of an over-long line
  std::vector<Segment> segments_of(const std::vector<std::string>& lines, bool split_long);
  std::vector<std::vector<models::Hypothesis>> decode_segments(const std::vector<Segment>& segs, const TranslateOptions& o);
  std::vector<int64_t> source_ids(const std::string& line);
  std::shared_ptr<models::Translator> model_;
  std::shared_ptr<TranslationTokenizer> tok_;
  int64_t truncated_ = 0;
  std::vector<std::string> warnings_;
  std::string checkpoint_note_;
};

}  // namespace attn::train
