// src/train/language_model.cc — the character language model as a TrainingJob (truncated BPTT with the
// state carried across chunks and checkpointed), its evaluation, and sampling from a trained model.
#include "attn/train/language_model.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>

#include "attn/autograd.h"
#include "attn/io/checkpoint.h"
#include "attn/io/safetensors.h"
#include "attn/ops.h"
#include "attn/optim/adam.h"
#include "attn/random.h"
#include "attn/train/trainer.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace attn::train {

RecurrentCell recurrent_cell_from_string(const std::string& name) {
  if (name == "lstm") return RecurrentCell::LSTM;
  if (name == "gru") return RecurrentCell::GRU;
  if (name == "rnn") return RecurrentCell::RNN;
  throw std::invalid_argument("unknown recurrent cell \"" + name + "\" (expected lstm, gru or rnn)");
}

std::string to_string(RecurrentCell cell) {
  return cell == RecurrentCell::LSTM ? "lstm" : cell == RecurrentCell::GRU ? "gru" : "rnn";
}

// ---- the model

CharLM::CharLM(const CharLMOptions& o) : options(o) {
  if (o.vocab_size <= 0 || o.embedding_dim <= 0 || o.hidden_size <= 0 || o.num_layers <= 0)
    throw std::invalid_argument("CharLM: vocab_size, embedding_dim, hidden_size and num_layers must be positive");
  embedding = register_module("embedding", nn::Embedding(o.vocab_size, o.embedding_dim));
  nn::RNNOptions ro{.input_size = o.embedding_dim, .hidden_size = o.hidden_size, .num_layers = o.num_layers,
                    .batch_first = true, .dropout = o.dropout};
  if (o.cell == RecurrentCell::LSTM) rnn = register_module("rnn", std::make_shared<nn::LSTM>(ro));
  if (o.cell == RecurrentCell::GRU) rnn = register_module("rnn", std::make_shared<nn::GRU>(ro));
  if (o.cell == RecurrentCell::RNN) rnn = register_module("rnn", std::make_shared<nn::RNN>(ro));
  decoder = register_module("decoder", nn::Linear(o.hidden_size, o.vocab_size));
}

Tensor CharLM::forward(const Tensor& ids, nn::LSTMState& state) {
  if (ids.dim() != 2) throw std::invalid_argument("CharLM: ids must be (B, T), got " + shape_str(ids.shape()));
  Tensor x = embedding->forward(ids);  // (B, T, E)
  Tensor out;
  if (options.cell == RecurrentCell::LSTM) {
    nn::LSTMOutput r = static_cast<nn::LSTM&>(*rnn).forward(x, state);
    out = r.output;
    state = r.state;
  } else {
    nn::RNNOutput r = options.cell == RecurrentCell::GRU ? static_cast<nn::GRU&>(*rnn).forward(x, state.h)
                                                         : static_cast<nn::RNN&>(*rnn).forward(x, state.h);
    out = r.output;
    state = {r.h_n, Tensor()};
  }
  return decoder->forward(out);  // (B, T, V)
}

Tensor CharLM::forward(const Tensor& ids) {
  nn::LSTMState s;
  return forward(ids, s);
}

namespace {

nn::LSTMState detached(const nn::LSTMState& s) {
  return {s.h.defined() ? s.h.detach() : Tensor(), s.c.defined() ? s.c.detach() : Tensor()};
}

// Inputs and targets of chunk [start, start + len) of every stream (stream s begins at s * stride).
std::pair<Tensor, Tensor> stream_chunk(const std::vector<int64_t>& ids, int64_t streams, int64_t stride,
                                       int64_t start, int64_t len) {
  std::vector<int64_t> x(size_t(streams * len)), y(size_t(streams * len));
  for (int64_t s = 0; s < streams; ++s)
    for (int64_t t = 0; t < len; ++t) {
      size_t i = size_t(s * stride + start + t);
      x[size_t(s * len + t)] = ids[i];
      y[size_t(s * len + t)] = ids[i + 1];
    }
  return {from_vector(x, {streams, len}), from_vector(y, {streams, len})};
}

}  // namespace

double language_model_loss(CharLM& model, const std::vector<int64_t>& ids, int64_t streams, int64_t chunk) {
  if (ids.size() < 2) throw std::invalid_argument("language_model_loss: the text needs at least 2 characters");
  NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  const int64_t n = int64_t(ids.size()) - 1;  // predictions
  streams = std::max<int64_t>(1, std::min(streams, n));
  const int64_t stride = n / streams;  // the last n % streams predictions are left out
  nn::LSTMState state;
  double total = 0;
  for (int64_t start = 0; start < stride; start += chunk) {
    int64_t len = std::min(chunk, stride - start);
    auto [x, y] = stream_chunk(ids, streams, stride, start, len);
    Tensor logits = model.forward(x, state);
    total += cross_entropy(logits.flatten(0, 1), y.flatten(), {.reduction = Reduction::Sum}).item<double>();
  }
  model.train(was_training);
  return total / double(streams * stride);
}

void load_init_weights(CharLM& model, const std::string& path) {
  io::SafeTensorsFile file = io::SafeTensorsFile::open(path);  // names the path when missing or corrupt
  const std::string where = "--init-weights " + path + ": ";
  const std::map<std::string, Tensor> want = model.state_dict();
  std::map<std::string, Tensor> state;
  for (const auto& [key, entry] : file.entries()) {
    auto it = want.find(key);
    if (it != want.end() && entry.dtype != it->second.dtype())  // load_state_dict would convert silently
      throw std::runtime_error(where + "\"" + key + "\" is " + entry.dtype_name + ", the model needs " +
                               dtype_name(it->second.dtype()));
    state.emplace(key, file.get(key));
  }
  try {
    model.load_state_dict(state);  // strict; checks every key and shape before it copies anything
  } catch (const std::exception& e) {
    throw std::runtime_error(where + e.what() + " (the model: " + to_string(model.options.cell) + ", vocabulary " +
                             std::to_string(model.options.vocab_size) + "; PyTorch names: embedding.weight, "
                             "rnn.weight_ih_l0, ..., decoder.bias)");
  }
}

namespace {

// ---- the carried state in the checkpoint's JSON: shape and the float bits in hex (exact)

json tensor_to_json(const Tensor& t) {
  if (!t.defined()) return nullptr;
  std::vector<float> v = t.to_vector<float>();
  static const char* digits = "0123456789abcdef";
  std::string hex(v.size() * 8, '0');
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t bits;
    std::memcpy(&bits, &v[i], 4);
    for (int k = 0; k < 8; ++k) hex[i * 8 + size_t(k)] = digits[(bits >> (28 - 4 * k)) & 15];
  }
  return {{"shape", t.shape()}, {"f32_hex", hex}};
}

Tensor tensor_from_json(const json& j, const std::string& path) {
  if (j.is_null()) return Tensor();
  Shape shape = j.at("shape").get<Shape>();
  const std::string& hex = j.at("f32_hex").get_ref<const std::string&>();
  int64_t n = std::accumulate(shape.begin(), shape.end(), int64_t(1), std::multiplies<>());
  if (int64_t(hex.size()) != n * 8)
    throw std::runtime_error(path + ": the carried LM state has " + std::to_string(hex.size()) +
                             " hex digits for shape " + shape_str(shape));
  std::vector<float> v(static_cast<size_t>(n));
  for (size_t i = 0; i < v.size(); ++i) {
    uint32_t bits = uint32_t(std::stoul(hex.substr(i * 8, 8), nullptr, 16));
    std::memcpy(&v[i], &bits, 4);
  }
  return from_vector(v, shape);
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

json model_json(const CharLMOptions& m) {
  return {{"vocab_size", m.vocab_size}, {"embedding_dim", m.embedding_dim}, {"hidden_size", m.hidden_size},
          {"num_layers", m.num_layers}, {"cell", to_string(m.cell)}, {"dropout", m.dropout}};
}

CharLMOptions model_from_json(const json& j, const std::string& file) {
  try {
    CharLMOptions m;
    m.vocab_size = j.at("vocab_size");
    m.embedding_dim = j.at("embedding_dim");
    m.hidden_size = j.at("hidden_size");
    m.num_layers = j.at("num_layers");
    m.cell = recurrent_cell_from_string(j.at("cell").get<std::string>());
    m.dropout = j.at("dropout");
    return m;
  } catch (const std::exception& e) {
    throw std::runtime_error(file + ": bad model config: " + e.what());
  }
}

json read_json(const std::string& path) {
  try {
    return json::parse(read_text(path));
  } catch (const json::exception& e) {
    throw std::runtime_error(path + ": invalid JSON: " + e.what());
  }
}

// Truncated BPTT over batch_size streams of the training text.
class LanguageModelJob final : public TrainingJob {
 public:
  LanguageModelJob(const LMTrainOptions& o, CharLM& model, optim::Adam& opt, const std::vector<int64_t>& train,
                   const std::vector<int64_t>& valid)
      : o_(o), model_(model), opt_(opt), train_(train), valid_(valid) {
    stride_ = (int64_t(train.size()) - 1) / o.batch_size;
    if (stride_ < o.seq_len)
      throw std::invalid_argument("train-lm: the training text (" + std::to_string(train.size()) +
                                  " characters) is too short for batch_size " + std::to_string(o.batch_size) +
                                  " x seq_len " + std::to_string(o.seq_len));
  }

  nn::Module& model() override { return model_; }
  optim::Optimizer& optimizer() override { return opt_; }
  int64_t num_batches(int64_t) override { return stride_ / o_.seq_len; }

  StepLoss train_loss(int64_t, int64_t batch) override {
    if (batch == 0) carried_ = {};  // each epoch starts from zero states
    auto [x, y] = stream_chunk(train_, o_.batch_size, stride_, batch * o_.seq_len, o_.seq_len);
    nn::LSTMState state = carried_;
    Tensor logits = model_.forward(x, state);
    carried_ = detached(state);
    rate_.add(double(o_.batch_size * o_.seq_len));
    return {cross_entropy(logits.flatten(0, 1), y.flatten()), double(o_.batch_size * o_.seq_len)};
  }

  io::Scalars train_scalars() override {
    return {{"train/chars_per_s", rate_.take()}};
  }

  io::Scalars evaluate(int64_t step) override {
    double loss = language_model_loss(model_, valid_, o_.eval_streams);
    if (o_.progress) std::fprintf(stderr, "step %lld: valid loss %.4f nats/char\n", (long long)step, loss);
    return {{"valid/loss", loss}};
  }

  std::string state_json() const override {
    json j = {{"lm", {{"train_chars", train_.size()}, {"batch_size", o_.batch_size}, {"seq_len", o_.seq_len},
                      {"h", tensor_to_json(carried_.h)}, {"c", tensor_to_json(carried_.c)}}}};
    return j.dump();
  }

  void load_state_json(const std::string& extra, const std::string& path) override {
    json lm = json::parse(extra).at("lm");
    auto expect = [&](const char* key, int64_t want) {
      if (lm.at(key).get<int64_t>() != want)
        throw std::runtime_error(path + " was written with " + key + " " + lm.at(key).dump() + " but this run has " +
                                 std::to_string(want) + "; resume with the same data and options or use another --out");
    };
    expect("train_chars", int64_t(train_.size()));
    expect("batch_size", o_.batch_size);
    expect("seq_len", o_.seq_len);
    carried_ = {tensor_from_json(lm.at("h"), path), tensor_from_json(lm.at("c"), path)};
  }

  void on_resume(const TrainerState& s, const std::string& path) override {
    if (o_.progress)
      std::fprintf(stderr, "resuming from %s at step %lld (epoch %lld, batch %lld)\n", path.c_str(), (long long)s.step,
                   (long long)s.epoch, (long long)s.batch);
  }

 private:
  const LMTrainOptions& o_;
  CharLM& model_;
  optim::Adam& opt_;
  const std::vector<int64_t>& train_;
  const std::vector<int64_t>& valid_;
  int64_t stride_ = 0;
  nn::LSTMState carried_;
  RateMeter rate_;  // units trained on since the last metrics line
};

// The vocabulary (built from the training text unless out_dir has one) and the model options; on
// resume the files in out_dir win and a conflicting model config is an error.
std::pair<text::Vocab, CharLMOptions> prepare_run_dir(const LMTrainOptions& o) {
  fs::create_directories(o.out_dir);
  const std::string vocab_path = o.out_dir + "/vocab.txt", config_path = o.out_dir + "/config.json";
  const bool resuming = o.resume && fs::exists(o.out_dir + "/checkpoint.safetensors");
  text::Vocab vocab;
  if (resuming && fs::exists(vocab_path)) {
    vocab = text::Vocab::load(vocab_path);
  } else {
    vocab = text::Vocab::build_from_files({o.train_path}, {.level = text::VocabLevel::Char, .specials = {"<unk>"}});
    vocab.save(vocab_path);
  }
  CharLMOptions mo = o.model;
  mo.vocab_size = vocab.size();
  if (resuming && fs::exists(config_path)) {
    CharLMOptions saved = model_from_json(read_json(config_path).at("model"), config_path);
    if (model_json(saved) != model_json(mo))
      throw std::runtime_error(o.out_dir + " holds a model with config " + model_json(saved).dump() +
                               " but this run asks for " + model_json(mo).dump() +
                               "; use another --out or the same options");
  }
  io::write_file_atomic(config_path, json{{"model", model_json(mo)}, {"vocab", "vocab.txt"}}.dump(1) + "\n");
  return {vocab, mo};
}

void check_options(const LMTrainOptions& o) {
  if (o.batch_size <= 0 || o.seq_len <= 0) throw std::invalid_argument("train-lm: batch size and seq_len must be positive");
  if (o.lr <= 0) throw std::invalid_argument("train-lm: lr must be positive");
  if (o.eval_streams <= 0) throw std::invalid_argument("train-lm: eval_streams must be positive");
  if (o.precision != "fp32" && o.precision != "bf16")
    throw std::invalid_argument("train-lm: precision must be fp32 or bf16, got '" + o.precision + "'");
  if (!(o.train_fraction > 0 && o.train_fraction <= 1))
    throw std::invalid_argument("train-lm: train_fraction must be in (0, 1], got " + std::to_string(o.train_fraction));
  for (const std::string& p : {o.train_path, o.valid_path})
    if (!fs::exists(p)) throw std::runtime_error("train-lm: missing " + p);
  if (!o.test_path.empty() && !fs::exists(o.test_path)) throw std::runtime_error("train-lm: missing " + o.test_path);
  // initial weights belong to a fresh run; a resumed run continues from its checkpoint's weights instead
  if (!o.init_weights.empty() && o.resume && fs::exists(o.out_dir + "/checkpoint.safetensors"))
    throw std::invalid_argument("train-lm: --init-weights " + o.init_weights + " starts a fresh run, but " + o.out_dir +
                                " holds a checkpoint that would be resumed; add --no-resume to start over from " +
                                o.init_weights + ", or drop --init-weights to resume the checkpoint");
  if (!o.init_weights.empty() && !fs::exists(o.init_weights))
    throw std::runtime_error("train-lm: --init-weights: missing " + o.init_weights);
}

}  // namespace

LMTrainResult train_language_model(const LMTrainOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  check_options(o);
  auto [vocab, mo] = prepare_run_dir(o);
  std::vector<int64_t> train_ids = vocab.encode(read_text(o.train_path), o.train_path);
  // a prefix, so a smaller fraction's text is part of a larger one's (the lecture's "10 % of the data")
  train_ids.resize(std::min(train_ids.size(), std::max<size_t>(2, size_t(double(train_ids.size()) * o.train_fraction))));
  std::vector<int64_t> valid_ids = vocab.encode(read_text(o.valid_path), o.valid_path);
  manual_seed(o.seed);  // model init; a resumed run restores the weights and the RNG
  CharLM model(mo);
  if (!o.init_weights.empty()) load_init_weights(model, o.init_weights);
  optim::Adam opt(model.parameters(), {.lr = o.lr});
  LanguageModelJob job(o, model, opt, train_ids, valid_ids);
  if (o.progress)
    std::fprintf(stderr,
                 "train-lm: %s, %lld parameters, vocabulary %lld, %zu training chars, %lld steps per epoch, %s\n",
                 to_string(mo.cell).c_str(), (long long)model.num_parameters(), (long long)mo.vocab_size,
                 train_ids.size(), (long long)job.num_batches(0), o.precision.c_str());
  Trainer trainer(job, {.out_dir = o.out_dir, .resume = o.resume, .max_epochs = o.max_epochs, .max_steps = o.max_steps,
                        .time_budget_s = o.time_budget_s > 0 ? std::max(1e-9, o.time_budget_s - elapsed()) : 0.0,
                        .clip_grad_norm = o.clip_grad_norm, .eval_every = o.eval_every, .eval_at_epoch_end = false,
                        .best_metric = "valid/loss", .best_mode = BestMode::Min, .patience = o.patience,
                        .log_every = o.log_every, .stop_after_steps = o.stop_after_steps, .progress = o.progress,
                        .progress_unit = "step", .handle_signals = o.handle_signals, .bf16 = o.precision == "bf16"});
  TrainerResult tr = trainer.fit();
  LMTrainResult r;
  r.steps = tr.state.step;
  r.epochs_done = tr.epochs_done;
  r.resumed = tr.resumed;
  r.precision = tr.state.bf16 ? "bf16" : "fp32";  // a resumed run keeps its checkpoint's (the Trainer)
  r.stopped_early = tr.stopped_early;
  r.signal = tr.signal;
  r.parameters = model.num_parameters();
  r.vocab_size = mo.vocab_size;
  for (const auto& [tag, v] : tr.last_eval)
    if (tag == "valid/loss") r.valid_loss = v;
  r.best_valid_loss = std::isnan(tr.state.best) ? r.valid_loss : tr.state.best;
  r.checkpoint = tr.checkpoint;
  r.best_checkpoint = tr.best_checkpoint;
  if (!o.test_path.empty() && !tr.crashed_on_purpose && r.signal == 0) {
    if (!o.out_dir.empty() && fs::exists(trainer.best_path()))
      model.load_state_dict(io::load_checkpoint(trainer.best_path()).model);
    r.test_loss = language_model_loss(model, vocab.encode(read_text(o.test_path), o.test_path), o.eval_streams);
  }
  r.seconds = elapsed();
  return r;
}

// ---- sampling

void check_generate_options(const GenerateOptions& o) {
  if (!(o.temperature > 0) || !std::isfinite(o.temperature))
    throw std::invalid_argument("generate: temperature must be > 0, got " + std::to_string(o.temperature));
  if (!(o.top_p > 0 && o.top_p <= 1))
    throw std::invalid_argument("generate: top_p must be in (0, 1], got " + std::to_string(o.top_p));
  if (o.top_k < 0) throw std::invalid_argument("generate: top_k must be >= 0, got " + std::to_string(o.top_k));
  if (o.length < 0) throw std::invalid_argument("generate: length must be >= 0, got " + std::to_string(o.length));
}

int64_t sample_logits(const std::vector<float>& logits, const GenerateOptions& o, double uniform,
                      const std::vector<int64_t>& excluded) {
  check_generate_options(o);
  const size_t V = logits.size();
  std::vector<double> p(V);
  std::vector<bool> allowed(V, true);
  for (int64_t e : excluded)
    if (e >= 0 && size_t(e) < V) allowed[size_t(e)] = false;
  double top = -INFINITY;
  for (size_t i = 0; i < V; ++i)
    if (allowed[i]) top = std::max(top, double(logits[i]) / o.temperature);
  if (!std::isfinite(top)) throw std::runtime_error("generate: no character can be sampled (all logits -inf or NaN)");
  std::vector<size_t> order;
  for (size_t i = 0; i < V; ++i)
    if (allowed[i]) {
      p[i] = std::exp(double(logits[i]) / o.temperature - top);
      order.push_back(i);
    }
  // most likely first, ties by id, so top-k and top-p keep a well-defined set
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return p[a] > p[b]; });
  if (o.top_k > 0 && size_t(o.top_k) < order.size()) order.resize(size_t(o.top_k));
  double total = 0;
  for (size_t i : order) total += p[i];
  double cumulative = 0;
  size_t keep = 0;
  while (keep < order.size() && cumulative < o.top_p * total) cumulative += p[order[keep++]];
  order.resize(std::max<size_t>(keep, 1));
  double mass = 0;
  for (size_t i : order) mass += p[i];
  double target = uniform * mass, acc = 0;
  for (size_t i : order) {
    acc += p[i];
    if (target < acc) return int64_t(i);
  }
  return int64_t(order.back());
}

LMSession::LMSession(std::shared_ptr<CharLM> model, text::Vocab vocab) : model_(std::move(model)), vocab_(std::move(vocab)) {
  if (vocab_.size() != model_->options.vocab_size)
    throw std::invalid_argument("generate: the vocabulary has " + std::to_string(vocab_.size()) +
                                " characters but the model has " + std::to_string(model_->options.vocab_size));
}

LMSession LMSession::load(const std::string& dir, const std::string& checkpoint) {
  const std::string config_path = dir + "/config.json";
  if (!fs::exists(config_path)) throw std::runtime_error(dir + " is not a train-lm run directory (no config.json)");
  CharLMOptions mo = model_from_json(read_json(config_path).at("model"), config_path);
  text::Vocab vocab = text::Vocab::load(dir + "/vocab.txt");
  std::string path = checkpoint;
  if (path.empty())
    path = fs::exists(dir + "/best.safetensors") ? dir + "/best.safetensors" : dir + "/checkpoint.safetensors";
  io::Checkpoint ck = io::load_checkpoint(path);
  auto emb = ck.model.find("embedding.weight");
  if (emb == ck.model.end() || emb->second.shape() != Shape{mo.vocab_size, mo.embedding_dim})
    throw std::runtime_error(path + " does not hold the model " + config_path + " describes (embedding.weight)");
  auto model = std::make_shared<CharLM>(mo);
  try {
    model->load_state_dict(ck.model);
  } catch (const std::exception& e) {
    throw std::runtime_error(path + " does not fit the model in " + config_path + ": " + e.what());
  }
  model->eval();
  return LMSession(model, std::move(vocab));
}

std::string LMSession::generate(const std::string& prompt, const GenerateOptions& o) {
  check_generate_options(o);
  std::vector<int64_t> ids = vocab_.encode_strict(prompt, "prompt");
  if (ids.empty()) throw std::invalid_argument("generate: the prompt must not be empty (the model needs a first character)");
  NoGradGuard ng;
  model_->eval();
  std::mt19937_64 rng(o.seed);
  std::vector<int64_t> specials(size_t(vocab_.num_specials()));
  std::iota(specials.begin(), specials.end(), int64_t(0));
  nn::LSTMState state;
  Tensor logits = model_->forward(from_vector(ids, {1, int64_t(ids.size())}), state);  // (1, T, V)
  std::vector<int64_t> out;
  for (int64_t i = 0; i < o.length; ++i) {
    std::vector<float> last = logits.select(1, logits.size(1) - 1).to_vector<float>();  // (V)
    double u = double(rng() >> 11) * 0x1.0p-53;  // [0, 1), the same on every platform
    int64_t next = sample_logits(last, o, u, specials);
    out.push_back(next);
    logits = model_->forward(from_vector(std::vector<int64_t>{next}, {1, 1}), state);
  }
  return prompt + vocab_.decode(out);
}

}  // namespace attn::train
