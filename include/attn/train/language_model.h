// attn/train/language_model.h — the character language model job (`attn train-lm`) and sampling from it
// (`attn generate`), both on the library's recurrent modules; training runs on attn::train::Trainer.
//
//   attn::train::LMTrainOptions o{.train_path = "data/austen/train.txt", .valid_path = "data/austen/valid.txt",
//                                 .test_path = "data/austen/test.txt", .out_dir = "runs/lm", .time_budget_s = 600};
//   o.model.cell = attn::train::RecurrentCell::LSTM;
//   attn::train::LMTrainResult r = attn::train::train_language_model(o);   // resumes if out_dir has a checkpoint
//   o.init_weights = "init.safetensors"; o.resume = false;   // a fresh run from given (e.g. PyTorch's) weights
//   attn::train::LMSession s = attn::train::LMSession::load("runs/lm");  // best.safetensors by default
//   std::string text = s.generate("It is a truth", {.length = 200, .temperature = 0.8, .top_k = 0, .seed = 1});
//
// Model: Embedding(V -> embedding_dim) -> num_layers of LSTM / GRU / RNN(tanh) (hidden_size, batch_first)
// -> Linear(hidden_size -> V). State-dict keys: embedding.weight, rnn.weight_ih_l0, ..., decoder.weight.
//
// Data (truncated backpropagation through time): the training text's ids (N; with train_fraction < 1
// only the first floor(N * train_fraction), the vocabulary still from all of it) are cut into batch_size
// streams of L = (N - 1) / batch_size characters (the tail is dropped); batch k of an epoch is chunk k
// of every stream, inputs (batch_size, seq_len) and targets shifted by one. The hidden state is carried
// from one chunk of a stream to the next (detached), reset at each epoch start, and saved in the
// checkpoint (hex of the float bits) so a resumed run continues bit-identically. Evaluation (loss in
// nats per character) runs over the whole text in eval_streams streams with the state carried.
//
// out_dir holds vocab.txt (character vocabulary of the training text, with <unk>), config.json (the
// model options), the Trainer's checkpoint.safetensors / best.safetensors (lowest valid loss),
// metrics.jsonl, a TensorBoard event file and curves.png.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "attn/nn/embedding.h"
#include "attn/nn/linear.h"
#include "attn/nn/rnn.h"
#include "attn/text/vocab.h"

namespace attn::train {

enum class RecurrentCell { LSTM, GRU, RNN };
RecurrentCell recurrent_cell_from_string(const std::string& name);  // "lstm", "gru", "rnn"
std::string to_string(RecurrentCell cell);

struct CharLMOptions {
  int64_t vocab_size = 0;
  int64_t embedding_dim = 128;
  int64_t hidden_size = 512;
  int64_t num_layers = 2;
  RecurrentCell cell = RecurrentCell::LSTM;
  double dropout = 0.0;  // between recurrent layers, while training
};

// ids (B, T) int64 -> logits (B, T, V); `state` in: the carried state (undefined tensors: zeros),
// out: the state after the last step ({h} for GRU/RNN, {h, c} for LSTM; (num_layers, B, hidden)).
class CharLM : public nn::Module {
 public:
  explicit CharLM(const CharLMOptions& options);
  Tensor forward(const Tensor& ids, nn::LSTMState& state);
  Tensor forward(const Tensor& ids) override;

  CharLMOptions options;
  std::shared_ptr<nn::Embedding> embedding;
  std::shared_ptr<nn::RNNBase> rnn;
  std::shared_ptr<nn::Linear> decoder;
};

// Mean cross-entropy (nats per character) of predicting ids[i + 1] from ids[..i] over `ids` cut into
// `streams` streams (fewer if the text is short), chunks of `chunk` steps, state carried; no grad, eval mode.
double language_model_loss(CharLM& model, const std::vector<int64_t>& ids, int64_t streams = 32, int64_t chunk = 256);

// Copies a PyTorch-named state_dict from a safetensors file (bench/torch_char_lm.py --save-init, or
// io::save_safetensors(path, model.state_dict())) into `model`, strictly: the file must hold exactly the
// model's keys, each with the model's shape and dtype; otherwise nothing is copied and the error names
// the file, the key and both shapes / dtypes. Lets attn and PyTorch train from the same initial weights.
void load_init_weights(CharLM& model, const std::string& path);

struct LMTrainOptions {
  std::string train_path, valid_path, test_path;  // test_path empty: no test loss
  std::string out_dir = "runs/lm";
  CharLMOptions model = {};                       // vocab_size comes from the vocabulary
  double train_fraction = 1.0;                    // train on the first floor(N * this) characters; (0, 1]
  int64_t batch_size = 32;                        // parallel streams
  int64_t seq_len = 64;                           // truncated-BPTT length
  double lr = 2e-3;                               // Adam
  double clip_grad_norm = 1.0;                    // 0: off
  int64_t max_epochs = 1000;
  int64_t max_steps = 0;                          // 0: no limit
  double time_budget_s = 0;                       // this invocation; 0: no limit
  int64_t eval_every = 500;                       // steps between validations (and checkpoints)
  int64_t eval_streams = 32;
  int64_t patience = 0;                           // validations without a better valid loss; 0: never stop
  uint64_t seed = 1;
  std::string precision = "fp32";                 // or "bf16": training steps under attn::Autocast; the
                                                  // checkpoint records it and a resumed run keeps its own
  std::string init_weights;                       // safetensors state_dict to start from (load_init_weights);
                                                  // only for a fresh run: refused if out_dir would be resumed
  bool resume = true;
  int64_t log_every = 50;
  bool progress = true;
  bool handle_signals = true;
  int64_t stop_after_steps = -1;                  // tests: return after this many steps, writing nothing
};

struct LMTrainResult {
  int64_t steps = 0, epochs_done = 0;
  double valid_loss = 0, best_valid_loss = 0;  // nats/char; last and best validation
  double test_loss = -1;                       // with the best weights; -1 when not measured
  int64_t parameters = 0, vocab_size = 0;
  double seconds = 0;
  std::string checkpoint, best_checkpoint;
  bool resumed = false, stopped_early = false;
  int signal = 0;
  std::string precision;  // the training precision the run used (fp32 or bf16)
};

LMTrainResult train_language_model(const LMTrainOptions& o);

struct GenerateOptions {
  int64_t length = 200;      // characters to sample after the prompt
  double temperature = 1.0;  // > 0
  int64_t top_k = 0;         // keep the k most likely characters; 0: all
  double top_p = 1.0;        // nucleus: the smallest set with probability >= top_p; in (0, 1]
  uint64_t seed = 0;
};

class LMSession {
 public:
  // out_dir/vocab.txt, out_dir/config.json and `checkpoint` (default: best.safetensors, else checkpoint.safetensors).
  static LMSession load(const std::string& out_dir, const std::string& checkpoint = "");
  LMSession(std::shared_ptr<CharLM> model, text::Vocab vocab);
  // The prompt followed by `length` sampled characters; the prompt is fed through the model and each
  // sampled character is fed back one at a time with the state carried. A character of the prompt
  // not in the vocabulary is an error naming it.
  std::string generate(const std::string& prompt, const GenerateOptions& o);
  CharLM& model() { return *model_; }
  const text::Vocab& vocab() const { return vocab_; }

 private:
  std::shared_ptr<CharLM> model_;
  text::Vocab vocab_;
};

// Draws an index from `logits` (V) with temperature, top-k and top-p; ids in `excluded` never come out.
// `uniform` is a number in [0, 1). Throws on bad options.
int64_t sample_logits(const std::vector<float>& logits, const GenerateOptions& o, double uniform,
                      const std::vector<int64_t>& excluded = {});
void check_generate_options(const GenerateOptions& o);

}  // namespace attn::train
