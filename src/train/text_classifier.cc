// src/train/text_classifier.cc — the Kim text CNN, the packed recurrent classifier, and the train-text
// job on the Trainer (shuffled per epoch from (seed, epoch), so resuming needs no data state).
#include "attn/train/text_classifier.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <stdexcept>

#include "attn/autograd.h"
#include "attn/io/checkpoint.h"
#include "attn/io/safetensors.h"
#include "attn/ops.h"
#include "attn/optim/adam.h"
#include "attn/random.h"
#include "attn/text/vocab.h"
#include "attn/train/trainer.h"
#include "train/accuracy_trainer_options.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace attn::train {

// ---- models

TextCNN::TextCNN(const TextCNNOptions& o) : options(o) {
  if (o.vocab_size <= 0 || o.num_classes <= 0 || o.embedding_dim <= 0 || o.num_filters <= 0 || o.kernel_sizes.empty())
    throw std::invalid_argument("TextCNN: vocab_size, num_classes, embedding_dim, num_filters and kernel_sizes must be set");
  embedding = register_module("embedding", nn::Embedding({.num_embeddings = o.vocab_size, .embedding_dim = o.embedding_dim,
                                                          .padding_idx = o.padding_idx}));
  convs = register_module("convs", nn::ModuleList());
  for (int64_t k : o.kernel_sizes) {
    if (k <= 0) throw std::invalid_argument("TextCNN: kernel sizes must be positive");
    convs->push_back(nn::Conv1d({.in_channels = o.embedding_dim, .out_channels = o.num_filters, .kernel_size = k}));
  }
  dropout = register_module("dropout", nn::Dropout(o.dropout));
  fc = register_module("fc", nn::Linear(o.num_filters * int64_t(o.kernel_sizes.size()), o.num_classes));
}

Tensor TextCNN::forward(const Tensor& ids) {
  if (ids.dim() != 2) throw std::invalid_argument("TextCNN: ids must be (B, T), got " + shape_str(ids.shape()));
  Tensor x = ids;
  const int64_t widest = *std::max_element(options.kernel_sizes.begin(), options.kernel_sizes.end());
  if (x.size(1) < widest) {  // too short for the widest kernel: pad with padding_idx
    Tensor pad = full({x.size(0), widest - x.size(1)}, double(options.padding_idx), {.dtype = DType::Int64});
    x = cat({x, pad}, 1);
  }
  std::vector<Tensor> weights, biases;
  for (size_t i = 0; i < convs->size(); ++i) {
    weights.push_back(convs->at<nn::Conv1d>(int64_t(i))->weight);
    biases.push_back(convs->at<nn::Conv1d>(int64_t(i))->bias);
  }
  // amax_t relu(conv_i(e^T)) for every width, concatenated: (B, sum F) in one fused op
  Tensor pooled = conv1d_max_over_time(embedding->forward(x), weights, biases);  // e: (B, T, E)
  return fc->forward(dropout->forward(pooled));  // (B, C)
}

RecurrentTextClassifier::RecurrentTextClassifier(const RecurrentTextOptions& o) : options(o) {
  if (o.vocab_size <= 0 || o.num_classes <= 0 || o.cell == RecurrentCell::RNN)
    throw std::invalid_argument("RecurrentTextClassifier: vocab_size and num_classes must be set; cell LSTM or GRU");
  embedding = register_module("embedding", nn::Embedding({.num_embeddings = o.vocab_size, .embedding_dim = o.embedding_dim,
                                                          .padding_idx = o.padding_idx}));
  nn::RNNOptions ro{.input_size = o.embedding_dim, .hidden_size = o.hidden_size, .num_layers = o.num_layers,
                    .batch_first = true};
  if (o.cell == RecurrentCell::LSTM) rnn = register_module("rnn", std::make_shared<nn::LSTM>(ro));
  else rnn = register_module("rnn", std::make_shared<nn::GRU>(ro));
  dropout = register_module("dropout", nn::Dropout(o.dropout));
  fc = register_module("fc", nn::Linear(o.hidden_size, o.num_classes));
}

Tensor RecurrentTextClassifier::forward(const Tensor& ids, const std::vector<int64_t>& lengths) {
  if (ids.dim() != 2) throw std::invalid_argument("RecurrentTextClassifier: ids must be (B, T), got " + shape_str(ids.shape()));
  nn::PackedSequence packed = nn::utils::pack_padded_sequence(embedding->forward(ids), lengths,
                                                              {.batch_first = true, .enforce_sorted = false});
  Tensor h_n = options.cell == RecurrentCell::LSTM ? static_cast<nn::LSTM&>(*rnn).forward(packed, {}).state.h
                                                   : static_cast<nn::GRU&>(*rnn).forward(packed, Tensor()).h_n;
  Tensor last = h_n.select(0, h_n.size(0) - 1);  // (B, H): the last layer, each row at its own last step
  return fc->forward(dropout->forward(last));
}

Tensor RecurrentTextClassifier::forward(const Tensor& ids) {
  return forward(ids, std::vector<int64_t>(size_t(ids.size(0)), ids.size(1)));
}

TextModel text_model_from_string(const std::string& name) {
  if (name == "cnn") return TextModel::CNN;
  if (name == "lstm") return TextModel::LSTM;
  if (name == "gru") return TextModel::GRU;
  throw std::invalid_argument("unknown text model \"" + name + "\" (expected cnn, lstm or gru)");
}

namespace {

// ---- data

struct TextExample {
  std::vector<int64_t> ids;
  int64_t label = 0;
};

}  // namespace

TextRows read_text_tsv(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw std::runtime_error("cannot open " + path);
  TextRows rows;
  std::string line;
  for (int64_t n = 1; std::getline(f, line); ++n) {
    if (line.empty()) continue;
    size_t tab = line.find('\t');
    if (tab == std::string::npos || tab == 0 || line.find_first_not_of(" \t\r", tab) == std::string::npos)
      throw std::runtime_error(path + ":" + std::to_string(n) + ": expected \"<label>\\t<tokens>\"");
    rows.labels.push_back(line.substr(0, tab));
    rows.texts.push_back(line.substr(tab + 1));
  }
  if (rows.labels.empty()) throw std::runtime_error(path + ": no examples");
  return rows;
}

namespace {

std::vector<TextExample> encode_rows(const TextRows& rows, const text::Vocab& vocab,
                                     const std::vector<std::string>& classes, int64_t max_len, const std::string& path) {
  std::vector<TextExample> out;
  for (size_t i = 0; i < rows.labels.size(); ++i) {
    auto it = std::find(classes.begin(), classes.end(), rows.labels[i]);
    if (it == classes.end())
      throw std::runtime_error(path + ": label \"" + rows.labels[i] + "\" (example " + std::to_string(i + 1) +
                               ") is not one of the training labels");
    TextExample ex{vocab.encode(rows.texts[i], path), int64_t(it - classes.begin())};
    if (int64_t(ex.ids.size()) > max_len) ex.ids.resize(size_t(max_len));
    out.push_back(std::move(ex));
  }
  return out;
}

struct TextBatch {
  Tensor ids;                    // (B, T) int64, padded with 0
  std::vector<int64_t> lengths;  // (B)
  Tensor labels;                 // (B) int64
};

TextBatch make_batch(const std::vector<TextExample>& data, const std::vector<size_t>& rows) {
  int64_t T = 1;
  for (size_t r : rows) T = std::max<int64_t>(T, int64_t(data[r].ids.size()));
  std::vector<int64_t> ids(rows.size() * size_t(T), 0), labels;
  TextBatch b;
  for (size_t i = 0; i < rows.size(); ++i) {
    const TextExample& ex = data[rows[i]];
    std::copy(ex.ids.begin(), ex.ids.end(), ids.begin() + int64_t(i) * T);
    b.lengths.push_back(std::max<int64_t>(1, int64_t(ex.ids.size())));  // an empty text reads one <pad>
    labels.push_back(ex.label);
  }
  b.ids = from_vector(ids, {int64_t(rows.size()), T});
  b.labels = from_vector(labels, {int64_t(rows.size())});
  return b;
}

Tensor classify(nn::Module& model, const TextBatch& b) {
  if (auto* r = dynamic_cast<RecurrentTextClassifier*>(&model)) return r->forward(b.ids, b.lengths);
  return model.forward(b.ids);
}

struct TextEval {
  double loss = 0, accuracy = 0;
};

TextEval evaluate_text(nn::Module& model, const std::vector<TextExample>& data) {
  NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  double loss = 0, correct = 0;
  for (size_t start = 0; start < data.size(); start += 128) {
    std::vector<size_t> rows(std::min<size_t>(128, data.size() - start));
    std::iota(rows.begin(), rows.end(), start);
    TextBatch b = make_batch(data, rows);
    Tensor logits = classify(model, b);
    loss += cross_entropy(logits, b.labels, {.reduction = Reduction::Sum}).item<double>();
    std::vector<int64_t> pred = argmax(logits, 1).to_vector<int64_t>(), gold = b.labels.to_vector<int64_t>();
    for (size_t i = 0; i < pred.size(); ++i) correct += pred[i] == gold[i];
  }
  model.train(was_training);
  return {loss / double(data.size()), correct / double(data.size())};
}

}  // namespace

std::vector<size_t> epoch_order(size_t n, uint64_t seed, int64_t epoch) {
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t(0));
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + uint64_t(epoch));
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[size_t(rng() % i)]);
  return order;
}

std::string shuffle_state_json(const std::string& key, size_t train_examples, int64_t batch_size, uint64_t seed) {
  return json{{key, {{"train_examples", train_examples}, {"batch_size", batch_size}, {"seed", seed}}}}.dump();
}

void check_shuffle_state_json(const std::string& extra_json, const std::string& key, size_t train_examples,
                              int64_t batch_size, uint64_t seed, const std::string& path) {
  json j = json::parse(extra_json).at(key);
  if (j.at("train_examples").get<size_t>() != train_examples || j.at("batch_size").get<int64_t>() != batch_size ||
      j.at("seed").get<uint64_t>() != seed)
    throw std::runtime_error(path + " was written for other data, batch size or seed (" + j.dump() +
                             "); resume with the same options or use another --out");
}

namespace {

class TextClassifierJob final : public TrainingJob {
 public:
  TextClassifierJob(const TextTrainOptions& o, nn::Module& model, optim::Adam& opt, const std::vector<TextExample>& train,
                    const std::vector<TextExample>& valid)
      : o_(o), model_(model), opt_(opt), train_(train), valid_(valid) {}

  nn::Module& model() override { return model_; }
  optim::Optimizer& optimizer() override { return opt_; }
  int64_t num_batches(int64_t) override { return (int64_t(train_.size()) + o_.batch_size - 1) / o_.batch_size; }

  bool splits_batches() const override { return true; }

  StepLoss train_loss(int64_t epoch, int64_t batch) override {
    if (epoch != order_epoch_) {
      order_ = epoch_order(train_.size(), o_.seed, epoch);
      order_epoch_ = epoch;
    }
    size_t start = size_t(batch * o_.batch_size), end = std::min(train_.size(), start + size_t(o_.batch_size));
    auto [first, last] = shard().rows(int64_t(end - start));  // data parallel: this rank's examples
    if (first == last) return {Tensor(), 0.0};
    end = start + size_t(last);
    start += size_t(first);
    TextBatch b = make_batch(train_, std::vector<size_t>(order_.begin() + int64_t(start), order_.begin() + int64_t(end)));
    return {cross_entropy(classify(model_, b), b.labels), double(end - start)};
  }

  io::Scalars evaluate(int64_t step) override {
    TextEval e = evaluate_text(model_, valid_);
    if (o_.progress)
      std::fprintf(stderr, "step %lld: valid loss %.4f, accuracy %.4f\n", (long long)step, e.loss, e.accuracy);
    return {{"valid/loss", e.loss}, {"valid/accuracy", e.accuracy}};
  }

  std::string state_json() const override { return shuffle_state_json("text", train_.size(), o_.batch_size, o_.seed); }

  void load_state_json(const std::string& extra, const std::string& path) override {
    check_shuffle_state_json(extra, "text", train_.size(), o_.batch_size, o_.seed, path);
  }

 private:
  const TextTrainOptions& o_;
  nn::Module& model_;
  optim::Adam& opt_;
  const std::vector<TextExample>& train_;
  const std::vector<TextExample>& valid_;
  std::vector<size_t> order_;
  int64_t order_epoch_ = -1;
};

json model_json(const TextTrainOptions& o, int64_t vocab_size, int64_t classes) {
  const char* kind = o.model == TextModel::CNN ? "cnn" : o.model == TextModel::LSTM ? "lstm" : "gru";
  return {{"model", kind}, {"vocab_size", vocab_size}, {"num_classes", classes}, {"embedding_dim", o.embedding_dim},
          {"hidden_size", o.hidden_size}, {"num_filters", o.num_filters}, {"kernel_sizes", o.kernel_sizes},
          {"dropout", o.dropout}, {"max_len", o.max_len}};
}

std::shared_ptr<nn::Module> make_model(const TextTrainOptions& o, int64_t vocab_size, int64_t classes) {
  if (o.model == TextModel::CNN)
    return std::make_shared<TextCNN>(TextCNNOptions{.vocab_size = vocab_size, .num_classes = classes,
                                                    .embedding_dim = o.embedding_dim, .kernel_sizes = o.kernel_sizes,
                                                    .num_filters = o.num_filters, .dropout = o.dropout});
  return std::make_shared<RecurrentTextClassifier>(RecurrentTextOptions{
      .vocab_size = vocab_size, .num_classes = classes, .embedding_dim = o.embedding_dim, .hidden_size = o.hidden_size,
      .cell = o.model == TextModel::LSTM ? RecurrentCell::LSTM : RecurrentCell::GRU, .dropout = o.dropout});
}

// The vocabulary and classes (from the training file, or out_dir's on resume) and the config check.
std::pair<text::Vocab, std::vector<std::string>> prepare_run_dir(const TextTrainOptions& o, const TextRows& train) {
  fs::create_directories(o.out_dir);
  const std::string vocab_path = o.out_dir + "/vocab.txt", labels_path = o.out_dir + "/labels.txt";
  const bool resuming = o.resume && fs::exists(o.out_dir + "/checkpoint.safetensors");
  text::Vocab vocab;
  std::vector<std::string> classes;
  if (resuming && fs::exists(vocab_path) && fs::exists(labels_path)) {
    vocab = text::Vocab::load(vocab_path);
    std::ifstream f(labels_path);
    for (std::string l; std::getline(f, l);)
      if (!l.empty()) classes.push_back(l);
  } else {
    std::string all;
    for (const std::string& t : train.texts) all += t + "\n";
    vocab = text::Vocab::build(all, {.level = text::VocabLevel::Word, .min_freq = o.min_freq}, o.train_path);
    vocab.save(vocab_path);
    for (const std::string& l : train.labels)
      if (std::find(classes.begin(), classes.end(), l) == classes.end()) classes.push_back(l);
    std::string text;
    for (const std::string& l : classes) text += l + "\n";
    io::write_file_atomic(labels_path, text);
  }
  const std::string config_path = o.out_dir + "/config.json";
  json config = model_json(o, vocab.size(), int64_t(classes.size()));
  if (resuming && fs::exists(config_path)) {
    std::ifstream f(config_path);
    json saved = json::parse(f, nullptr, false);
    if (saved != config)
      throw std::runtime_error(o.out_dir + " holds a model with config " + saved.dump() + " but this run asks for " +
                               config.dump() + "; use another --out or the same options");
  }
  io::write_file_atomic(config_path, config.dump(1) + "\n");
  return {vocab, classes};
}

}  // namespace

TextTrainResult train_text_classifier(const TextTrainOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  if (o.batch_size <= 0 || o.max_len <= 0 || o.lr <= 0)
    throw std::invalid_argument("train-text: batch size, max_len and lr must be positive");
  if (!(o.train_fraction > 0 && o.train_fraction <= 1))
    throw std::invalid_argument("train-text: train_fraction must be in (0, 1], got " + std::to_string(o.train_fraction));
  if (o.patience < 0) throw std::invalid_argument("train-text: patience must be >= 0");
  TextRows train_rows = read_text_tsv(o.train_path), valid_rows = read_text_tsv(o.valid_path);
  // The file is already shuffled (prepare_fortunes.py), so its head is a sample of every class.
  const size_t kept = std::max<size_t>(1, size_t(double(train_rows.labels.size()) * o.train_fraction));
  train_rows.labels.resize(kept);
  train_rows.texts.resize(kept);
  auto [vocab, classes] = prepare_run_dir(o, train_rows);
  std::vector<TextExample> train = encode_rows(train_rows, vocab, classes, o.max_len, o.train_path);
  std::vector<TextExample> valid = encode_rows(valid_rows, vocab, classes, o.max_len, o.valid_path);
  manual_seed(o.seed);
  std::shared_ptr<nn::Module> model = make_model(o, vocab.size(), int64_t(classes.size()));
  optim::Adam opt(model->parameters(), {.lr = o.lr});
  TextClassifierJob job(o, *model, opt, train, valid);
  if (o.progress)
    std::fprintf(stderr, "train-text: %lld parameters, %zu classes, vocabulary %lld, %zu training examples\n",
                 (long long)model->num_parameters(), classes.size(), (long long)vocab.size(), train.size());
  TrainerOptions trainer_options = accuracy_trainer_options(o, elapsed());
  trainer_options.patience = o.patience;
  Trainer trainer(job, trainer_options);
  TrainerResult tr = trainer.fit();
  TextTrainResult r;
  r.steps = tr.state.step;
  r.epochs_done = tr.epochs_done;
  r.resumed = tr.resumed;
  r.stopped_early = tr.stopped_early;
  r.signal = tr.signal;
  r.parameters = model->num_parameters();
  r.vocab_size = vocab.size();
  r.num_classes = int64_t(classes.size());
  r.train_examples = int64_t(train.size());
  for (const auto& [tag, v] : tr.last_eval) {
    if (tag == "valid/accuracy") r.valid_accuracy = v;
    if (tag == "valid/loss") r.valid_loss = v;
  }
  r.best_valid_accuracy = std::isnan(tr.state.best) ? r.valid_accuracy : tr.state.best;
  r.checkpoint = tr.checkpoint;
  r.best_checkpoint = tr.best_checkpoint;
  if (!o.test_path.empty() && !tr.crashed_on_purpose && r.signal == 0) {
    if (!o.out_dir.empty() && fs::exists(trainer.best_path()))
      model->load_state_dict(io::load_checkpoint(trainer.best_path()).model);
    TextEval e = evaluate_text(*model, encode_rows(read_text_tsv(o.test_path), vocab, classes, o.max_len, o.test_path));
    r.test_accuracy = e.accuracy;
    r.test_loss = e.loss;
  }
  r.seconds = elapsed();
  return r;
}

}  // namespace attn::train
