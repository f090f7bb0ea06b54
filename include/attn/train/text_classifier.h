// attn/train/text_classifier.h — text classifiers over word ids (the lecture's "CNN in NLP" and recurrent
// ones) and the `attn train-text` job on attn::train::Trainer.
//
//   attn::train::TextCNN cnn({.vocab_size = 5000, .num_classes = 10});   // Kim (2014): widths 3, 4, 5
//   Tensor logits = cnn.forward(ids);                                     // ids (B, T) int64 -> (B, 10)
//
//   attn::train::RecurrentTextClassifier rnn({.vocab_size = 5000, .num_classes = 10, .cell = RecurrentCell::GRU});
//   Tensor logits2 = rnn.forward(ids, {12, 7, 30});                       // true lengths; padding ignored
//
//   attn::train::TextTrainOptions o{.train_path = "data/fortunes/train.tsv", .valid_path = "data/fortunes/valid.tsv",
//                                   .test_path = "data/fortunes/test.tsv", .out_dir = "runs/text-cnn"};
//   attn::train::TextTrainResult r = attn::train::train_text_classifier(o);   // resumes if out_dir has a checkpoint
//
// Data files: one example per line, "<label>\t<space-separated tokens>" (scripts/prepare_fortunes.py).
// Classes: the labels in order of first appearance in the training file, saved as out_dir/labels.txt.
// Vocabulary: word level from the training file (<pad> = 0, <unk> = 1), saved as out_dir/vocab.txt.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "attn/nn/conv.h"
#include "attn/nn/embedding.h"
#include "attn/nn/linear.h"
#include "attn/nn/rnn.h"
#include "attn/train/language_model.h"

namespace attn::train {

struct TextCNNOptions {
  int64_t vocab_size = 0;
  int64_t num_classes = 0;
  int64_t embedding_dim = 128;
  std::vector<int64_t> kernel_sizes = {3, 4, 5};
  int64_t num_filters = 100;  // per kernel size
  double dropout = 0.5;       // before the Linear
  int64_t padding_idx = 0;
};

// Embedding -> per width k: Conv1d(E -> F, k) -> ReLU -> max over time -> concat (B, F * K) -> Dropout
// -> Linear. Keys: embedding.weight, convs.<i>.weight / bias, fc.weight / bias. Inputs shorter than the
// widest kernel are right-padded with padding_idx (whose embedding row is zero).
class TextCNN : public nn::Module {
 public:
  explicit TextCNN(const TextCNNOptions& options);
  Tensor forward(const Tensor& ids) override;  // (B, T) int64 -> (B, num_classes)

  TextCNNOptions options;
  std::shared_ptr<nn::Embedding> embedding;
  std::shared_ptr<nn::ModuleList> convs;
  std::shared_ptr<nn::Dropout> dropout;
  std::shared_ptr<nn::Linear> fc;
};

struct RecurrentTextOptions {
  int64_t vocab_size = 0;
  int64_t num_classes = 0;
  int64_t embedding_dim = 128;
  int64_t hidden_size = 256;
  int64_t num_layers = 1;
  RecurrentCell cell = RecurrentCell::LSTM;
  double dropout = 0.5;  // before the Linear
  int64_t padding_idx = 0;
};

// Embedding -> packed LSTM / GRU (enforce_sorted = false) -> the last layer's final hidden state (each
// sequence's own last step) -> Dropout -> Linear. Keys: embedding.weight, rnn.weight_ih_l0, ..., fc.weight.
class RecurrentTextClassifier : public nn::Module {
 public:
  explicit RecurrentTextClassifier(const RecurrentTextOptions& options);
  Tensor forward(const Tensor& ids, const std::vector<int64_t>& lengths);  // (B, T), B lengths -> (B, C)
  Tensor forward(const Tensor& ids) override;                               // every length T

  RecurrentTextOptions options;
  std::shared_ptr<nn::Embedding> embedding;
  std::shared_ptr<nn::RNNBase> rnn;
  std::shared_ptr<nn::Dropout> dropout;
  std::shared_ptr<nn::Linear> fc;
};

enum class TextModel { CNN, LSTM, GRU };
TextModel text_model_from_string(const std::string& name);  // "cnn", "lstm", "gru"

struct TextTrainOptions {
  std::string train_path, valid_path, test_path;  // test_path empty: no test accuracy
  std::string out_dir = "runs/text";
  TextModel model = TextModel::CNN;
  int64_t embedding_dim = 128;
  int64_t hidden_size = 256;          // LSTM / GRU
  int64_t num_filters = 100;          // CNN, per width
  std::vector<int64_t> kernel_sizes = {3, 4, 5};
  double dropout = 0.5;
  int64_t min_freq = 2;               // vocabulary: words seen fewer times are <unk>
  int64_t max_len = 200;              // tokens kept per example
  int64_t batch_size = 32;
  double lr = 1e-3;                   // Adam
  double clip_grad_norm = 1.0;        // 0: off
  int64_t max_epochs = 10;
  int64_t max_steps = 0;
  double time_budget_s = 0;
  int64_t eval_every = 0;             // steps between validations; 0: at each epoch end only
  int64_t patience = 0;               // stop after this many validations without a better accuracy; 0: never
  double train_fraction = 1.0;        // the first floor(N * this) examples (at least 1; vocabulary from them too); (0, 1]
  uint64_t seed = 1;                  // initialisation and the per-epoch shuffle
  bool resume = true;
  int64_t log_every = 50;
  bool progress = true;
  bool handle_signals = true;
  int64_t stop_after_steps = -1;      // tests: return after this many steps, writing nothing
};

struct TextTrainResult {
  int64_t steps = 0, epochs_done = 0;
  double valid_accuracy = 0, valid_loss = 0, best_valid_accuracy = 0;
  double test_accuracy = -1, test_loss = -1;  // with the best weights; -1 when not measured
  int64_t parameters = 0, vocab_size = 0, num_classes = 0, train_examples = 0;
  double seconds = 0;
  std::string checkpoint, best_checkpoint;
  bool resumed = false, stopped_early = false;
  int signal = 0;
};

TextTrainResult train_text_classifier(const TextTrainOptions& o);

// The data helpers train-text shares with `attn finetune` (attn/train/finetune.h).
struct TextRows {
  std::vector<std::string> labels, texts;
};
TextRows read_text_tsv(const std::string& path);  // "<label>\t<text>" lines; errors name the file and line
// The order of epoch `epoch`: a Fisher-Yates shuffle from (seed, epoch), the same on every platform.
std::vector<size_t> epoch_order(size_t n, uint64_t seed, int64_t epoch);
// The resume record both jobs keep in a checkpoint under `key` ("text", "finetune"): a resume must see the same
// number of train examples, batch size and seed, or the epoch orders would differ; the check throws naming `path`.
std::string shuffle_state_json(const std::string& key, size_t train_examples, int64_t batch_size, uint64_t seed);
void check_shuffle_state_json(const std::string& extra_json, const std::string& key, size_t train_examples,
                              int64_t batch_size, uint64_t seed, const std::string& path);

}  // namespace attn::train
