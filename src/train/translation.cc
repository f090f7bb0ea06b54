// src/train/translation.cc — the translator's training job on attn::train::Trainer (paper schedule,
// label smoothing, clipping, validation with BLEU, early stopping on it) and batch translation.
#include "attn/train/translation.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <tuple>

#include "attn/autograd.h"
#include "attn/data/parallel_text.h"
#include "attn/dist/data_parallel.h"
#include "attn/eval/bleu.h"
#include "attn/io/checkpoint.h"
#include "attn/io/heatmap.h"
#include "attn/io/metrics.h"
#include "attn/io/progress.h"
#include "attn/io/safetensors.h"
#include "attn/models/int8_translator.h"
#include "attn/nn/utils.h"
#include "attn/ops.h"
#include "attn/optim/adam.h"
#include "attn/random.h"
#include "attn/train/trainer.h"
#include "backend/cpu/gemm_bf16.h"
#include "io/json_file.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace attn::train {

namespace {

json model_json(const models::TranslatorOptions& m) {
  return {{"vocab_size", m.vocab_size}, {"d_model", m.d_model}, {"nhead", m.nhead},
          {"num_encoder_layers", m.num_encoder_layers}, {"num_decoder_layers", m.num_decoder_layers},
          {"dim_feedforward", m.dim_feedforward}, {"dropout", m.dropout},
          {"activation", models::activation_name(m.activation)}, {"norm_first", m.norm_first},
          {"max_len", m.max_len}, {"tie_output", m.tie_output}, {"pad_id", m.pad_id}, {"bos_id", m.bos_id},
          {"eos_id", m.eos_id}, {"final_norm", m.final_norm}};
}

// config.json's value under `key`, converted to T; a missing key or a wrong type names the key.
template <class T>
T config_value(const json& j, const char* key, const std::string& file) {
  try {
    return j.at(key).get<T>();
  } catch (const json::exception& e) {
    const std::string want = std::is_same_v<T, bool> ? "true or false"
                             : std::is_same_v<T, std::string> ? "a string"
                             : std::is_floating_point_v<T> ? "a number" : "an integer";
    if (!j.contains(key)) throw std::runtime_error(file + ": bad model config: the key \"" + std::string(key) + "\" is missing");
    throw std::runtime_error(file + ": bad model config: \"" + std::string(key) + "\" must be " + want + ", got " +
                             j.at(key).dump());
  }
}

models::TranslatorOptions model_from_json(const json& j, const std::string& file) {
  if (!j.is_object()) throw std::runtime_error(file + ": bad model config: \"model\" must be an object");
  models::TranslatorOptions m;
  m.vocab_size = config_value<int64_t>(j, "vocab_size", file);
  m.d_model = config_value<int64_t>(j, "d_model", file);
  m.nhead = config_value<int64_t>(j, "nhead", file);
  m.num_encoder_layers = config_value<int64_t>(j, "num_encoder_layers", file);
  m.num_decoder_layers = config_value<int64_t>(j, "num_decoder_layers", file);
  m.dim_feedforward = config_value<int64_t>(j, "dim_feedforward", file);
  m.dropout = config_value<double>(j, "dropout", file);
  const std::string activation = config_value<std::string>(j, "activation", file);
  if (activation != "relu" && activation != "gelu" && activation != "silu" && activation != "swish")
    throw std::runtime_error(file + ": bad model config: unsupported \"activation\" \"" + activation +
                             "\" (relu, gelu, silu or swish)");
  m.activation = models::activation_from_name(activation, file + ": \"activation\"");
  m.norm_first = config_value<bool>(j, "norm_first", file);
  m.max_len = config_value<int64_t>(j, "max_len", file);
  m.tie_output = config_value<bool>(j, "tie_output", file);
  m.pad_id = config_value<int64_t>(j, "pad_id", file);
  m.bos_id = config_value<int64_t>(j, "bos_id", file);
  m.eos_id = config_value<int64_t>(j, "eos_id", file);
  // configs written before the option have the final norms
  m.final_norm = j.contains("final_norm") ? config_value<bool>(j, "final_norm", file) : true;
  return m;
}

void write_text_atomic(const std::string& path, const std::string& text) { io::write_file_atomic(path, text); }

// The model config.json describes must be the one the checkpoint holds. Checked on the checkpoint's
// tensor shapes before any of the model is built, so a damaged or hostile config (a vocabulary of
// 10^12, 10^8 layers) is refused with an error instead of allocating whatever it asks for.
void check_config_matches_checkpoint(const models::TranslatorOptions& mo, const std::map<std::string, Tensor>& sd,
                                     const std::string& config_path, const std::string& ckpt_path) {
  auto fail = [&](const std::string& what) {
    throw std::runtime_error(config_path + " does not describe the model in " + ckpt_path + ": " + what +
                             "; config and checkpoint come from different runs");
  };
  auto shape_of = [&](const std::string& key) -> const Shape& {
    auto it = sd.find(key);
    if (it == sd.end()) fail("the checkpoint has no tensor \"" + key + "\"");
    return it->second.shape();
  };
  const Shape& emb = shape_of("embedding.weight");
  if (emb != Shape{mo.vocab_size, mo.d_model})
    fail("vocab_size " + std::to_string(mo.vocab_size) + " and d_model " + std::to_string(mo.d_model) +
         " against embedding.weight of shape " + shape_str(emb));
  const std::pair<const char*, int64_t> stacks[] = {{"encoder", mo.num_encoder_layers},
                                                    {"decoder", mo.num_decoder_layers}};
  for (const auto& [stack, layers] : stacks) {
    const std::string prefix = std::string("transformer.") + stack + ".layers.";
    int64_t found = 0;  // 1 + the highest layer index among the checkpoint's keys
    for (const auto& entry : sd) {
      const std::string& key = entry.first;
      if (key.compare(0, prefix.size(), prefix) != 0) continue;
      int64_t index = -1;
      const char* first = key.data() + prefix.size();
      const auto [end, ec] = std::from_chars(first, key.data() + key.size(), index);
      if (ec != std::errc() || end == first || *end != '.' || index < 0 || index >= (int64_t(1) << 40))
        fail("the checkpoint has a malformed key \"" + key + "\"");
      found = std::max(found, index + 1);
    }
    if (found != layers)
      fail(std::string("num_") + stack + "_layers " + std::to_string(layers) + " against " + std::to_string(found) +
           " in the checkpoint");
    if (layers > 0) {
      const Shape& w = shape_of(prefix + "0.linear1.weight");
      if (w != Shape{mo.dim_feedforward, mo.d_model})
        fail("dim_feedforward " + std::to_string(mo.dim_feedforward) + " against " + prefix +
             "0.linear1.weight of shape " + shape_str(w));
    }
  }
}

double noam(int64_t step, int64_t d_model, int64_t warmup, double factor) {
  double s = double(std::max<int64_t>(step, 1));
  return factor * std::pow(double(d_model), -0.5) * std::min(std::pow(s, -0.5), s * std::pow(double(warmup), -1.5));
}

struct DevEval {
  double loss = 0, bleu = 0, chrf = 0;
};

// Teacher-forced dev loss (no smoothing) on every dev pair and greedy BLEU on `sentences` of them.
DevEval evaluate(models::Translator& model, const text::SentencePiece& sp, const data::ParallelCorpus& dev,
                 const std::vector<std::string>& dev_refs, int64_t sentences, int64_t max_tokens) {
  NoGradGuard ng;
  model.eval();
  DevEval r;
  data::TokenBatchOptions bo{.max_tokens = max_tokens, .shuffle = false, .pad_id = model.options.pad_id,
                             .bos_id = model.options.bos_id, .eos_id = model.options.eos_id};
  data::TokenBatcher batches(dev, bo);
  double total = 0, count = 0;
  for (int64_t b = 0; b < batches.num_batches(0); ++b) {
    auto batch = batches.get(0, b);
    Tensor logits = model.forward(batch.src, batch.tgt_in);
    Tensor loss = cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(),
                                {.ignore_index = model.options.pad_id, .reduction = Reduction::Sum});
    total += loss.item<double>();
    count += double(batch.tgt_tokens);
  }
  r.loss = count > 0 ? total / count : 0;
  TranslationSession session(std::shared_ptr<models::Translator>(&model, [](models::Translator*) {}),
                             std::shared_ptr<text::SentencePiece>(const_cast<text::SentencePiece*>(&sp),
                                                                  [](text::SentencePiece*) {}));
  // `sentences` pairs evenly spaced over the whole dev set (every dev book, not only the first lines)
  int64_t n = std::min<int64_t>(sentences, dev.size());
  std::vector<std::string> src_lines, refs;
  for (int64_t k = 0; k < n; ++k) {
    size_t i = size_t(k * dev.size() / n);
    std::vector<int> ids(dev.src[i].begin(), dev.src[i].end());
    src_lines.push_back(sp.decode(ids));
    refs.push_back(dev_refs[size_t(dev.line[i] - 1)]);
  }
  std::vector<std::string> hyps = session.translate(src_lines, {.beam_size = 1, .batch_size = 64});
  r.bleu = eval::corpus_bleu(hyps, {refs}).score;
  r.chrf = eval::corpus_chrf(hyps, {refs}).score;
  model.train();
  return r;
}

// The translator as a TrainingJob: token batches, label-smoothed cross-entropy, dev loss and BLEU.
class TranslatorJob final : public TrainingJob {
 public:
  TranslatorJob(const TranslationTrainOptions& o, models::Translator& model, optim::Adam& opt,
                const text::SentencePiece& sp, const data::TokenBatcher& batches, const data::ParallelCorpus& dev,
                const std::vector<std::string>& dev_refs)
      : o_(o), model_(model), opt_(opt), sp_(sp), batches_(batches), dev_(dev), dev_refs_(dev_refs) {}

  nn::Module& model() override { return model_; }
  optim::Optimizer& optimizer() override { return opt_; }
  int64_t num_batches(int64_t epoch) override { return batches_.num_batches(epoch); }

  bool splits_batches() const override { return true; }

  StepLoss train_loss(int64_t epoch, int64_t batch) override {
    data::TranslationBatch b = batches_.get(epoch, batch);
    if (shard().world_size > 1) {  // data parallel: this rank's sentences, weighted by their target tokens
      auto [first, last] = shard().rows(b.src.size(0));
      if (first == last) return {Tensor(), 0.0};
      b.src = b.src.narrow(0, first, last - first);
      b.tgt_in = b.tgt_in.narrow(0, first, last - first);
      b.tgt_out = b.tgt_out.narrow(0, first, last - first);
      b.src_tokens = int64_t(ne(b.src, double(model_.options.pad_id)).sum().item());
      b.tgt_tokens = int64_t(ne(b.tgt_out, double(model_.options.pad_id)).sum().item());
    }
    Tensor logits = model_.forward(b.src, b.tgt_in);  // (N, T, V)
    Tensor loss = cross_entropy(logits.flatten(0, 1), b.tgt_out.flatten(),
                                {.ignore_index = model_.options.pad_id, .label_smoothing = o_.label_smoothing});
    rate_.add(double(b.src_tokens + b.tgt_tokens));
    return {loss, double(b.tgt_tokens)};
  }

  io::Scalars train_scalars() override {
    return {{"train/tokens_per_s", rate_.take()}};
  }

  io::Scalars evaluate(int64_t step) override {
    DevEval ev = train::evaluate(model_, sp_, dev_, dev_refs_, o_.eval_sentences, o_.max_tokens);
    std::fprintf(stderr, "step %lld: dev loss %.3f, BLEU %.2f, chrF %.2f\n", (long long)step, ev.loss, ev.bleu, ev.chrf);
    return {{"dev/loss", ev.loss}, {"dev/bleu", ev.bleu}, {"dev/chrf", ev.chrf}};
  }

  void on_resume(const TrainerState& s, const std::string& path) override {
    std::fprintf(stderr, "resuming from %s at step %lld (epoch %lld, batch %lld, best dev BLEU %.2f)\n", path.c_str(),
                 (long long)s.step, (long long)s.epoch, (long long)s.batch, std::isnan(s.best) ? -1.0 : s.best);
  }

 private:
  const TranslationTrainOptions& o_;
  models::Translator& model_;
  optim::Adam& opt_;
  const text::SentencePiece& sp_;
  const data::TokenBatcher& batches_;
  const data::ParallelCorpus& dev_;
  const std::vector<std::string>& dev_refs_;
  RateMeter rate_;  // units trained on since the last metrics line
};

struct RunDir {
  std::shared_ptr<text::SentencePiece> sp;
  models::TranslatorOptions model;
  std::string precision;
};

// The tokenizer (trained on the training text unless out_dir has one), the model options and the
// precision; the files in out_dir win on resume and a conflicting model config is an error.
RunDir prepare_run_dir(const TranslationTrainOptions& o) {
  if (o.precision != "fp32" && o.precision != "bf16")
    throw std::invalid_argument("train_translator: precision must be fp32 or bf16, got '" + o.precision + "'");
  fs::create_directories(o.out_dir);
  const std::string spm_path = o.out_dir + "/spm.model", config_path = o.out_dir + "/config.json";
  models::TranslatorOptions mo = o.model;
  if (!fs::exists(spm_path)) {
    text::SentencePiece::train({.input_files = {o.train_src, o.train_tgt}, .model_prefix = o.out_dir + "/spm",
                                .vocab_size = int(o.vocab_size), .input_sentence_size = 200000,
                                .pad_id = int(mo.pad_id), .unk_id = 1,
                                // decoding from pad (Marian) needs no <s> piece
                                .bos_id = mo.starts_from_pad() ? -1 : int(mo.bos_id), .eos_id = int(mo.eos_id),
                                .hard_vocab_limit = false});
  }
  auto sp = std::make_shared<text::SentencePiece>(spm_path);
  mo.vocab_size = sp->vocab_size();
  mo.max_len = std::max<int64_t>(mo.max_len, 2 * o.max_len + 16);
  std::string precision = o.precision;
  if (fs::exists(config_path)) {
    const json config = io::read_json_file(config_path);
    models::TranslatorOptions saved = model_from_json(config.at("model"), config_path);
    const bool resuming = fs::exists(o.out_dir + "/checkpoint.safetensors") && o.resume;
    if (model_json(saved) != model_json(mo) && resuming)
      throw std::runtime_error(o.out_dir + " holds a model with config " + model_json(saved).dump() +
                               " but this run asks for " + model_json(mo).dump() +
                               "; use another out_dir or the same options");
    // a resumed run repeats its steps bit for bit only in the precision it started with
    const std::string saved_precision = config.value("precision", "fp32");
    if (resuming && saved_precision != precision) {
      std::fprintf(stderr, "resuming in %s, the precision recorded in %s (not %s)\n", saved_precision.c_str(),
                   config_path.c_str(), precision.c_str());
      precision = saved_precision;
    }
  }
  write_text_atomic(config_path,
                    json{{"model", model_json(mo)}, {"spm", "spm.model"}, {"precision", precision}}.dump(1) + "\n");
  return {sp, mo, precision};
}

}  // namespace

std::string default_training_precision() {
  return cpu::bf16_path() == cpu::Bf16Path::Convert ? "fp32" : "bf16";
}

TranslationTrainResult train_translator(const TranslationTrainOptions& o) {
  auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
  RunDir run;
  dist::rank0_first([&] { run = prepare_run_dir(o); });  // one tokenizer for all ranks
  const std::shared_ptr<text::SentencePiece>& sp = run.sp;
  const models::TranslatorOptions& mo = run.model;
  data::ParallelCorpus train = data::ParallelCorpus::load(o.train_src, o.train_tgt, *sp, {.max_len = o.max_len});
  data::ParallelCorpus dev = data::ParallelCorpus::load(o.dev_src, o.dev_tgt, *sp, {.max_len = 1 << 20});
  std::vector<std::string> dev_refs = data::read_lines(o.dev_tgt);
  data::TokenBatcher batches(train, {.max_tokens = o.max_tokens, .shuffle = true, .seed = o.seed,
                                     .pad_id = mo.pad_id, .bos_id = mo.bos_id, .eos_id = mo.eos_id});
  manual_seed(o.seed);  // model init; a resumed run restores the weights and the RNG
  auto model = std::make_shared<models::Translator>(mo);
  optim::Adam opt(model->parameters(), {.lr = 0.0, .betas = {0.9, 0.98}, .eps = 1e-9});
  std::fprintf(stderr, "translator: %lld parameters, %lld training pairs (%lld empty, %lld too long dropped), "
                       "%lld batches per epoch, vocabulary %lld, precision %s\n",
               (long long)model->num_parameters(), (long long)train.size(), (long long)train.dropped_empty,
               (long long)train.dropped_long, (long long)batches.num_batches(0), (long long)mo.vocab_size,
               run.precision.c_str());

  TranslatorJob job(o, *model, opt, *sp, batches, dev, dev_refs);
  const int64_t d_model = mo.d_model;
  Trainer trainer(job, {.out_dir = o.out_dir, .resume = o.resume, .max_epochs = o.max_epochs, .max_steps = o.max_steps,
                        // the budget counts from the start of this call, tokenizer and data loading included
                        .time_budget_s = o.time_budget_s > 0 ? std::max(1e-9, o.time_budget_s - elapsed()) : 0.0,
                        .clip_grad_norm = o.clip_grad_norm,
                        .lr_at = [&](int64_t step) { return noam(step, d_model, o.warmup_steps, o.lr_factor); },
                        .eval_every = o.eval_every, .best_metric = "dev/bleu", .patience = o.patience,
                        .log_every = o.log_every, .plot_metrics = {"dev/chrf"}, .progress = o.progress,
                        .progress_unit = "batch", .handle_signals = o.handle_signals,
                        .bf16 = run.precision == "bf16"});
  TrainerResult tr = trainer.fit();
  TranslationTrainResult res;
  for (const auto& [tag, v] : tr.last_eval) {
    if (tag == "dev/loss") res.dev_loss = v;
    if (tag == "dev/bleu") res.dev_bleu = v;
    if (tag == "dev/chrf") res.dev_chrf = v;
  }
  res.steps = tr.state.step;
  res.epochs_done = tr.epochs_done;
  res.best_dev_bleu = std::isnan(tr.state.best) ? 0.0 : std::max(0.0, tr.state.best);
  res.stopped_early = tr.stopped_early;
  res.signal = tr.signal;
  res.precision = run.precision;
  res.seconds = elapsed();
  res.checkpoint = trainer.checkpoint_path();
  res.best_checkpoint = fs::exists(trainer.best_path()) ? trainer.best_path() : res.checkpoint;
  return res;
}

// ---- translation
namespace {
// A run directory's joint SentencePiece model: ids are its piece ids on both sides.
class SentencePieceTokenizer : public TranslationTokenizer {
 public:
  explicit SentencePieceTokenizer(std::shared_ptr<text::SentencePiece> sp) : sp_(std::move(sp)) {}
  int vocab_size() const override { return sp_->vocab_size(); }
  std::vector<int> encode_source(const std::string& line) const override { return sp_->encode(line); }
  std::vector<int> encode_target(const std::string& line) const override { return sp_->encode(line); }
  std::string decode_target(const std::vector<int>& ids) const override { return sp_->decode(ids); }
  std::string piece(int id) const override { return sp_->id_to_piece(id); }

 private:
  std::shared_ptr<text::SentencePiece> sp_;
};
}  // namespace

TranslationSession::TranslationSession(std::shared_ptr<models::Translator> model, std::shared_ptr<text::SentencePiece> sp)
    : TranslationSession(std::move(model), std::make_shared<SentencePieceTokenizer>(std::move(sp))) {}

TranslationSession::TranslationSession(std::shared_ptr<models::Translator> model,
                                       std::shared_ptr<TranslationTokenizer> tokenizer)
    : model_(std::move(model)), tok_(std::move(tokenizer)) {
  if (tok_->vocab_size() != model_->options.vocab_size)
    throw std::invalid_argument("translation: the tokenizer has " + std::to_string(tok_->vocab_size()) +
                                " pieces but the model's vocabulary is " + std::to_string(model_->options.vocab_size));
}

namespace {
// A directory written by `attn quantize`: config.json's "quantized" is "int8" and "weights" names the file
// ("precision" is the training precision, fp32 or bf16, which train_translator records).
TranslationSession load_int8_session(const std::string& dir, const json& config, const models::TranslatorOptions& mo,
                                     std::shared_ptr<text::SentencePiece> sp, const std::string& checkpoint) {
  const std::string config_path = dir + "/config.json";
  const std::string quantized = config_value<std::string>(config, "quantized", config_path);
  if (quantized != "int8")
    throw std::runtime_error(config_path + ": \"quantized\" is \"" + quantized + "\"; only \"int8\" models are stored");
  const std::string weights = checkpoint.empty() ? dir + "/" + config_value<std::string>(config, "weights", config_path)
                                                 : checkpoint;
  auto model = std::make_shared<models::Translator>(mo);
  models::load_int8_translator(*model, weights);
  return TranslationSession(model, sp);
}
}  // namespace

TranslationSession TranslationSession::load(const std::string& dir, const std::string& checkpoint) {
  const std::string config_path = dir + "/config.json";
  const json config = io::read_json_file(config_path);
  if (!config.is_object() || !config.contains("model"))
    throw std::runtime_error(config_path + ": bad model config: no \"model\" object (is this a run directory of train-translator?)");
  models::TranslatorOptions mo = model_from_json(config.at("model"), config_path);
  // the tokenizer file config.json names (relative to the run directory), spm.model if it names none
  const std::string spm_name = config.contains("spm") ? config_value<std::string>(config, "spm", config_path) : "spm.model";
  const std::string spm_path = fs::path(spm_name).is_absolute() ? spm_name : dir + "/" + spm_name;
  if (!fs::exists(spm_path))
    throw std::runtime_error(config_path + ": \"spm\" names " + spm_path + ", which does not exist");
  auto sp = std::make_shared<text::SentencePiece>(spm_path);
  if (sp->vocab_size() > mo.vocab_size)  // ids the embedding has no row for
    throw std::runtime_error(spm_path + " has " + std::to_string(sp->vocab_size()) + " pieces but the model in " +
                             config_path + " has a vocabulary of " + std::to_string(mo.vocab_size) +
                             ": tokenizer and model come from different runs");
  if (config.contains("quantized")) return load_int8_session(dir, config, mo, sp, checkpoint);
  std::string path = checkpoint, note;
  if (path.empty()) {
    path = dir + "/best.safetensors";
    if (!fs::exists(path)) {  // no validation finished yet: the latest step is all there is
      if (!fs::exists(dir + "/checkpoint.safetensors"))
        throw std::runtime_error(dir + " has neither best.safetensors nor checkpoint.safetensors");
      path = dir + "/checkpoint.safetensors";
      note = "no best.safetensors in " + dir + " (no validation has finished): using checkpoint.safetensors, the latest step";
    }
  }
  io::Checkpoint ck = io::load_checkpoint(path);
  check_config_matches_checkpoint(mo, ck.model, config_path, path);
  std::shared_ptr<models::Translator> model;
  try {
    model = std::make_shared<models::Translator>(mo);
  } catch (const std::bad_alloc&) {  // max_len, which no checkpoint tensor records, sizes the positional table
    throw std::runtime_error(config_path + ": the model it describes does not fit in memory (vocab_size " +
                             std::to_string(mo.vocab_size) + ", d_model " + std::to_string(mo.d_model) + ", max_len " +
                             std::to_string(mo.max_len) + ")");
  } catch (const std::exception& e) {  // nhead, dropout, ids: the modules' own checks
    throw std::runtime_error(config_path + ": " + e.what());
  }
  try {
    model->load_state_dict(ck.model);
  } catch (const std::exception& e) {
    throw std::runtime_error(path + " does not fit the model in " + dir + "/config.json: " + e.what());
  }
  model->eval();
  TranslationSession session(model, sp);
  session.checkpoint_note_ = note;
  return session;
}

}  // namespace attn::train
