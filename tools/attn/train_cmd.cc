// tools/attn/train_cmd.cc — `attn train` (Fashion-MNIST MLP / CNN) and `attn demo`.
//
//   attn train --model mlp                       # the default MLP recipe (see docs/training.md)
//   attn train --model cnn --epochs 2 --lr 2e-3 --optimizer adamw --out runs/cnn2
//   attn train --model cnn --out runs/cnn --resume
//
// stdout: one line per epoch, then a JSON object (the last line) with test_accuracy (a fraction),
// test_loss, train_loss, train_accuracy, epochs, steps, seconds, checkpoint, ... The progress bar
// goes to stderr. <out>/config.json records the full configuration and <out>/result.json the result.
// Ctrl-C (SIGINT) or SIGTERM: the step in progress finishes, the checkpoint is written, the JSON line
// says "interrupted": true and the exit status is 128 + the signal; --resume continues exactly.
#include <omp.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "attn/attn.h"
#include "attn/train/classifier.h"
#include "commands.h"

namespace attn::cli {
namespace {

using json = nlohmann::json;

// A training recipe; the per-model defaults below are the documented ones (README, docs/training.md).
struct Recipe {
  int64_t epochs = 0;
  int64_t batch_size = 128;
  double lr = 1e-3;
  std::string optimizer = "adam";
  double weight_decay = 0.0;
  double momentum = 0.9;  // sgd only
  std::string schedule = "cosine";
  double dropout = 0.0;
  bool batch_norm = false;
};

Recipe default_recipe(const std::string& model) {
  if (model == "mlp")  // 89.55 % test accuracy
    return {.epochs = 8, .batch_size = 128, .lr = 1e-3, .optimizer = "adam", .schedule = "cosine"};
  // 4 epochs reached 91.22 %, short of the 91.5 % target; 6 epochs reach 91.88 % (README, Results).
  return {.epochs = 6, .batch_size = 128, .lr = 1e-3, .optimizer = "adam", .schedule = "cosine"};
}

struct TrainConfig {
  std::string task = "fashion-mnist";
  std::string model = "cnn";
  Recipe recipe;
  uint64_t seed = 0;
  std::string data_dir = "/usr/share/datasets/fashion-mnist";
  std::string out;  // default runs/<model>
  bool resume = false;
  int64_t checkpoint_every = 0;
  int64_t stop_after_steps = -1;
  int threads = 0;  // 0: OpenMP's default
  bool progress = true;
  int64_t limit_train = 0, limit_test = 0;  // use only the first N examples (0: all)
  std::string precision = "fp32";           // or bf16: steps under attn::Autocast (a resumed run keeps its own)
};

json config_json(const TrainConfig& c) {
  const Recipe& r = c.recipe;
  return {{"task", c.task},
          {"model", c.model},
          {"precision", c.precision},
          {"epochs", r.epochs},
          {"batch_size", r.batch_size},
          {"lr", r.lr},
          {"optimizer", r.optimizer},
          {"weight_decay", r.weight_decay},
          {"momentum", r.momentum},
          {"lr_schedule", r.schedule},
          {"dropout", r.dropout},
          {"batch_norm", r.batch_norm},
          {"seed", c.seed},
          {"data_dir", c.data_dir},
          {"out", c.out},
          {"limit_train", c.limit_train},
          {"limit_test", c.limit_test},
          {"threads", omp_get_max_threads()}};
}

std::shared_ptr<optim::Optimizer> make_optimizer(const Recipe& r, const std::vector<Tensor>& params) {
  if (r.optimizer == "adam")
    return std::make_shared<optim::Adam>(params, optim::AdamOptions{.lr = r.lr, .weight_decay = r.weight_decay});
  if (r.optimizer == "adamw")
    return std::make_shared<optim::AdamW>(params, optim::AdamWOptions{.lr = r.lr, .weight_decay = r.weight_decay});
  if (r.optimizer == "sgd")
    return std::make_shared<optim::SGD>(
        params, optim::SGDOptions{.lr = r.lr, .momentum = r.momentum, .weight_decay = r.weight_decay});
  throw std::invalid_argument("unknown optimizer '" + r.optimizer + "' (expected adam, adamw or sgd)");
}

std::shared_ptr<optim::LRScheduler> make_scheduler(const Recipe& r, optim::Optimizer& opt, int64_t total_steps) {
  if (r.schedule == "none") return nullptr;
  if (r.schedule == "cosine")  // per step, from lr down to 0 at the last step
    return std::make_shared<optim::CosineAnnealingLR>(
        opt, optim::CosineAnnealingLROptions{.T_max = std::max<int64_t>(total_steps, 1), .eta_min = 0.0});
  throw std::invalid_argument("unknown lr schedule '" + r.schedule + "' (expected cosine or none)");
}

void write_json_file(const std::string& path, const json& j) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    if (!f) throw std::runtime_error("cannot write " + tmp);
    f << j.dump(2) << "\n";
    if (!f) throw std::runtime_error("error writing " + tmp);
  }
  std::filesystem::rename(tmp, path);
}

// The first n examples of `ds` (all of them for n <= 0 or n >= size).
std::shared_ptr<const data::TensorDataset> first_n(std::shared_ptr<const data::TensorDataset> ds, int64_t n) {
  if (n <= 0 || n >= ds->size()) return ds;
  return std::make_shared<data::TensorDataset>(ds->data().narrow(0, 0, n), ds->targets().narrow(0, 0, n));
}

// Runs one training job; prints per-epoch lines and returns the result object (also the final line).
json run_training(const TrainConfig& c) {
  if (c.task != "fashion-mnist") throw std::invalid_argument("unknown task '" + c.task + "' (expected fashion-mnist)");
  if (c.threads > 0) omp_set_num_threads(c.threads);
  if (!data::FashionMNIST::available(c.data_dir))
    throw std::runtime_error("Fashion-MNIST not found in " + c.data_dir +
                             " (expects {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz); pass --data-dir");
  const Recipe& r = c.recipe;
  std::shared_ptr<const data::TensorDataset> train_set = std::make_shared<data::FashionMNIST>(
      data::FashionMNISTOptions{.root = c.data_dir, .train = true, .normalize = true});
  std::shared_ptr<const data::TensorDataset> test_set = std::make_shared<data::FashionMNIST>(
      data::FashionMNISTOptions{.root = c.data_dir, .train = false, .normalize = true});
  train_set = first_n(train_set, c.limit_train);
  test_set = first_n(test_set, c.limit_test);

  manual_seed(c.seed);  // model init; a resumed run overwrites the weights and the RNG state
  std::shared_ptr<nn::Module> model;
  if (c.model == "mlp")
    model = train::make_mlp({.dropout = r.dropout});
  else if (c.model == "cnn")
    model = train::make_cnn({.batch_norm = r.batch_norm, .dropout = r.dropout});
  else
    throw std::invalid_argument("unknown model '" + c.model + "' (expected mlp or cnn)");
  auto opt = make_optimizer(r, model->parameters());
  int64_t per_epoch = (train_set->size() + r.batch_size - 1) / r.batch_size;
  auto sched = make_scheduler(r, *opt, per_epoch * r.epochs);

  std::filesystem::create_directories(c.out);
  write_json_file(c.out + "/config.json", config_json(c));
  std::printf("attn train: %s %s, %lld parameters, %lld epochs x %lld steps (batch %lld), %s lr %g (%s), %d threads -> %s\n",
              c.task.c_str(), c.model.c_str(), (long long)model->num_parameters(), (long long)r.epochs,
              (long long)per_epoch, (long long)r.batch_size, r.optimizer.c_str(), r.lr, r.schedule.c_str(),
              omp_get_max_threads(), c.out.c_str());
  std::fflush(stdout);

  train::ClassifierTrainer trainer(model, opt, train_set, test_set,
                                   {.epochs = r.epochs, .batch_size = r.batch_size, .seed = c.seed, .out_dir = c.out,
                                    .resume = c.resume, .checkpoint_every = c.checkpoint_every,
                                    .stop_after_steps = c.stop_after_steps, .progress = c.progress,
                                    .bf16 = c.precision == "bf16"},
                                   sched);
  if (c.resume && std::filesystem::exists(trainer.checkpoint_path()))
    std::printf("resuming from %s\n", trainer.checkpoint_path().c_str());
  train::TrainResult res = trainer.fit();
  json out = {{"task", c.task},
              {"model", c.model},
              {"test_accuracy", res.test_accuracy},
              {"test_loss", res.test_loss},
              {"train_loss", res.train_loss},
              {"train_accuracy", res.train_accuracy},
              {"epochs", res.epochs},
              {"steps", res.steps},
              {"seconds", res.seconds},
              {"checkpoint", res.checkpoint},
              {"out", c.out},
              {"resumed", res.resumed},
              {"finished", res.finished},
              {"interrupted", res.signal != 0}};
  json full = out;
  json hist = json::array();
  for (auto& e : res.history)
    hist.push_back({{"epoch", e.epoch}, {"train_loss", e.train_loss}, {"train_accuracy", e.train_accuracy},
                    {"test_loss", e.test_loss}, {"test_accuracy", e.test_accuracy}, {"lr", e.lr},
                    {"seconds", e.seconds}});
  full["history"] = hist;
  full["config"] = config_json(c);
  write_json_file(c.out + "/result.json", full);
  if (res.signal) exit_code = 128 + res.signal;  // SIGINT/SIGTERM: the checkpoint holds the last step
  return out;
}

// Options shared by train and demo.
void add_common(CLI::App* cmd, TrainConfig& c) {
  cmd->add_option("--data-dir", c.data_dir, "directory with the Fashion-MNIST .gz files")->capture_default_str();
  cmd->add_option("--seed", c.seed, "seed for the model init, dropout and the data order")->capture_default_str();
  cmd->add_option("--threads", c.threads, "OpenMP threads (0: OMP_NUM_THREADS or all cores)")->capture_default_str();
  cmd->add_option("--precision", c.precision,
                  "fp32, or bf16 (autocast: bf16 GEMMs and convolutions, fp32 master weights); a resumed run keeps "
                  "the precision of its checkpoint")
      ->check(CLI::IsMember({"fp32", "bf16"}))
      ->capture_default_str();
  cmd->add_flag("!--no-progress", c.progress, "no progress bar on stderr");
}

}  // namespace

void add_train_commands(CLI::App& app) {
  // ---- attn train
  auto cfg = std::make_shared<TrainConfig>();
  auto recipe = std::make_shared<Recipe>();
  CLI::App* train = app.add_subcommand("train", "train a model; the last stdout line is a JSON result");
  train->add_option("--task", cfg->task, "what to train on")->check(CLI::IsMember({"fashion-mnist"}))->capture_default_str();
  train->add_option("--model", cfg->model, "mlp (784-512-256-10) or cnn (2 conv + 2 linear)")
      ->check(CLI::IsMember({"mlp", "cnn"}))
      ->capture_default_str();
  auto* o_epochs = train->add_option("--epochs", recipe->epochs, "epochs (default: the model's recipe)")
                       ->check(CLI::NonNegativeNumber);
  auto* o_bs = train->add_option("--batch-size", recipe->batch_size, "batch size (default 128)")->check(CLI::PositiveNumber);
  auto* o_lr = train->add_option("--lr", recipe->lr, "peak learning rate (default 1e-3)")->check(CLI::PositiveNumber);
  auto* o_opt = train->add_option("--optimizer", recipe->optimizer, "adam, adamw or sgd (default adam)")
                    ->check(CLI::IsMember({"adam", "adamw", "sgd"}));
  auto* o_wd = train->add_option("--weight-decay", recipe->weight_decay, "weight decay (default 0)")
                   ->check(CLI::NonNegativeNumber);
  auto* o_mom = train->add_option("--momentum", recipe->momentum, "SGD momentum (default 0.9)")->check(CLI::Range(0.0, 1.0));
  auto* o_sched = train->add_option("--lr-schedule", recipe->schedule, "cosine (per step, to 0) or none (default cosine)")
                      ->check(CLI::IsMember({"cosine", "none"}));
  auto* o_drop = train->add_option("--dropout", recipe->dropout, "dropout probability (default 0)")->check(CLI::Range(0.0, 0.99));
  auto* o_bn = train->add_flag("--batch-norm", recipe->batch_norm, "cnn: BatchNorm2d after each conv");
  train->add_option("--out", cfg->out, "output directory (default runs/<model>)");
  train->add_flag("--resume", cfg->resume, "continue from <out>/checkpoint.safetensors if it exists");
  train->add_option("--checkpoint-every", cfg->checkpoint_every, "also checkpoint every N steps (0: each epoch only)")
      ->check(CLI::NonNegativeNumber);
  train->add_option("--stop-after-steps", cfg->stop_after_steps,
                    "stop after N steps in total without saving (simulates an interruption)")
      ->check(CLI::NonNegativeNumber);
  train->add_option("--limit-train", cfg->limit_train, "use only the first N training images (quick checks)")
      ->check(CLI::NonNegativeNumber);
  train->add_option("--limit-test", cfg->limit_test, "use only the first N test images")->check(CLI::NonNegativeNumber);
  add_common(train, *cfg);
  train->callback([=] {
    TrainConfig c = *cfg;
    Recipe d = default_recipe(c.model);
    // Options the user gave override the model's recipe.
    if (o_epochs->count()) d.epochs = recipe->epochs;
    if (o_bs->count()) d.batch_size = recipe->batch_size;
    if (o_lr->count()) d.lr = recipe->lr;
    if (o_opt->count()) d.optimizer = recipe->optimizer;
    if (o_wd->count()) d.weight_decay = recipe->weight_decay;
    if (o_mom->count()) d.momentum = recipe->momentum;
    if (o_sched->count()) d.schedule = recipe->schedule;
    if (o_drop->count()) d.dropout = recipe->dropout;
    if (o_bn->count()) d.batch_norm = recipe->batch_norm;
    c.recipe = d;
    if (c.out.empty()) c.out = "runs/" + c.model;
    json r = run_training(c);
    std::cout << r.dump() << std::endl;
  });

  // ---- attn demo
  auto demo_cfg = std::make_shared<TrainConfig>();
  auto demo_models = std::make_shared<std::string>("cnn");
  auto demo_root = std::make_shared<std::string>("runs/demo");
  CLI::App* demo = app.add_subcommand("demo", "the default demo: train the Fashion-MNIST CNN with its default recipe");
  demo->add_option("--models", *demo_models, "cnn, mlp or mlp,cnn")
      ->check(CLI::IsMember({"cnn", "mlp", "mlp,cnn"}))
      ->capture_default_str();
  demo->add_option("--out", *demo_root, "runs go to <out>-<model>")->capture_default_str();
  add_common(demo, *demo_cfg);
  demo->callback([=] {
    json summary = json::object();
    std::vector<std::string> models = *demo_models == "mlp,cnn" ? std::vector<std::string>{"mlp", "cnn"}
                                                                : std::vector<std::string>{*demo_models};
    double seconds = 0;
    for (const std::string& m : models) {
      TrainConfig c = *demo_cfg;
      c.model = m;
      c.recipe = default_recipe(m);
      c.out = *demo_root + "-" + m;
      json r = run_training(c);
      std::cout << r.dump() << std::endl;
      if (exit_code) return;  // interrupted
      summary[m] = r;
      seconds += r["seconds"].get<double>();
    }
    json last = summary[models.back()];
    last["seconds_total"] = seconds;
    if (models.size() > 1) last["runs"] = summary;
    std::cout << last.dump() << std::endl;
  });
}

}  // namespace attn::cli
