// tests/test_lm_init_weights.cc — `train-lm --init-weights`: a PyTorch-named initial state_dict loads into
// CharLM exactly (a fixture from tests/make_lm_init_fixture.py and a round trip through attn's own
// safetensors), a run from it does not depend on --seed, and bad files, keys, shapes, dtypes and a resume
// of an existing checkpoint are refused with errors naming them, leaving the model untouched.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "attn/attn.h"
#include "attn/io/safetensors.h"
#include "attn/train/language_model.h"

#ifndef ATTN_FIXTURE_DIR
#define ATTN_FIXTURE_DIR "tests/fixtures"
#endif

using namespace attn;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("attn_lminit_" + std::to_string(::getpid()) + "_" + name);
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

train::CharLMOptions tiny_model() {
  return {.vocab_size = 12, .embedding_dim = 8, .hidden_size = 16, .num_layers = 2, .cell = train::RecurrentCell::LSTM};
}

std::unique_ptr<train::CharLM> model_with_seed(uint64_t seed, train::CharLMOptions o = tiny_model()) {
  manual_seed(seed);
  return std::make_unique<train::CharLM>(o);
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != DType::Float32 || b.dtype() != DType::Float32) return false;
  std::vector<float> x = a.to_vector<float>(), y = b.to_vector<float>();
  return std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
}

// Every entry of `state` equals the model's parameter of that name, bit for bit, and no key is left out.
void expect_model_holds(train::CharLM& model, const std::map<std::string, Tensor>& state) {
  std::map<std::string, Tensor> have = model.state_dict();
  ASSERT_EQ(have.size(), state.size());
  for (const auto& [key, t] : state) {
    ASSERT_TRUE(have.count(key)) << key;
    EXPECT_TRUE(bitwise_equal(have.at(key), t)) << key;
  }
}

// Runs `fn`, expects it to throw, and checks the message names every string of `parts`.
template <typename Fn>
void expect_error_naming(Fn fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no exception";
  } catch (const std::exception& e) {
    for (const std::string& p : parts) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(LMInitWeights, PyTorchStateDictLoadsUnchanged) {
  const std::string path = std::string(ATTN_FIXTURE_DIR) + "/lm_init_tiny.safetensors";
  std::map<std::string, Tensor> torch_state = io::load_safetensors(path);
  EXPECT_EQ(torch_state.size(), 11u);  // embedding, 2 layers x 4 LSTM tensors, decoder weight and bias
  auto model = model_with_seed(7);
  train::load_init_weights(*model, path);
  expect_model_holds(*model, torch_state);
}

TEST(LMInitWeights, RoundTripThroughAttnsOwnFile) {
  fs::path dir = temp_dir("roundtrip");
  for (auto cell : {train::RecurrentCell::LSTM, train::RecurrentCell::GRU, train::RecurrentCell::RNN}) {
    train::CharLMOptions o = tiny_model();
    o.cell = cell;
    auto saved = model_with_seed(3, o);
    const std::string file = (dir / ("init_" + train::to_string(cell) + ".safetensors")).string();
    io::save_safetensors(file, saved->state_dict());
    auto other = model_with_seed(4, o);
    ASSERT_FALSE(bitwise_equal(other->embedding->weight, saved->embedding->weight));  // the seed matters
    train::load_init_weights(*other, file);
    expect_model_holds(*other, saved->state_dict());
  }
  fs::remove_all(dir);
}

TEST(LMInitWeights, BadFilesKeysShapesAndDtypesAreRefusedWithoutCopying) {
  fs::path dir = temp_dir("errors");
  auto source = model_with_seed(3);
  const std::map<std::string, Tensor> good = source->state_dict();
  auto target = model_with_seed(4);
  const std::map<std::string, Tensor> before = target->state_dict();
  auto write = [&](const std::string& name, const std::map<std::string, Tensor>& state) {
    std::string file = (dir / name).string();
    io::save_safetensors(file, state);
    return file;
  };
  auto load = [&](const std::string& file) { return [&, file] { train::load_init_weights(*target, file); }; };

  expect_error_naming(load((dir / "absent.safetensors").string()), {"absent.safetensors"});
  std::ofstream(dir / "garbage.safetensors") << "not a safetensors file";
  expect_error_naming(load((dir / "garbage.safetensors").string()), {"garbage.safetensors"});

  auto missing = good;
  missing.erase("decoder.bias");
  expect_error_naming(load(write("missing.safetensors", missing)), {"missing.safetensors", "Missing key(s)", "\"decoder.bias\""});

  auto extra = good;
  extra.emplace("rnn.weight_hr_l0", zeros({4, 16}));
  expect_error_naming(load(write("extra.safetensors", extra)), {"extra.safetensors", "Unexpected key(s)", "\"rnn.weight_hr_l0\""});

  auto wrong_shape = good;
  wrong_shape["embedding.weight"] = zeros({13, 8});  // another vocabulary
  expect_error_naming(load(write("shape.safetensors", wrong_shape)),
                      {"shape.safetensors", "embedding.weight", "(13, 8)", "(12, 8)"});

  auto wrong_dtype = good;
  wrong_dtype["rnn.bias_hh_l1"] = good.at("rnn.bias_hh_l1").to(DType::Float64);
  expect_error_naming(load(write("dtype.safetensors", wrong_dtype)), {"dtype.safetensors", "rnn.bias_hh_l1", "F64"});

  expect_model_holds(*target, before);  // every refusal left the model as it was
  fs::remove_all(dir);
}

TEST(LMInitWeights, TrainingFromInitWeightsIgnoresTheSeedAndRefusesAResume) {
  fs::path dir = temp_dir("train");
  std::string text;
  for (int i = 0; i < 40; ++i) text += "abc defg hij ";  // 11 distinct characters + <unk> = 12
  std::ofstream(dir / "train.txt") << text;
  std::ofstream(dir / "valid.txt") << text.substr(0, 300);
  auto init = model_with_seed(5);
  const std::string init_file = (dir / "init.safetensors").string();
  io::save_safetensors(init_file, init->state_dict());
  auto run = [&](const std::string& out, uint64_t seed, const std::string& init_weights, bool resume) {
    train::LMTrainOptions o;
    o.train_path = (dir / "train.txt").string();
    o.valid_path = (dir / "valid.txt").string();
    o.out_dir = (dir / out).string();
    o.model = tiny_model();
    o.batch_size = 4;
    o.seq_len = 10;
    o.max_steps = 5;
    o.eval_every = 5;
    o.eval_streams = 4;
    o.progress = false;
    o.handle_signals = false;
    o.seed = seed;
    o.init_weights = init_weights;
    o.resume = resume;
    return train::train_language_model(o);
  };
  train::LMTrainResult a = run("a", 1, init_file, true);
  train::LMTrainResult b = run("b", 2, init_file, true);
  train::LMTrainResult c = run("c", 2, "", true);
  EXPECT_EQ(a.valid_loss, b.valid_loss);  // same initial weights, same data: the seed no longer matters
  EXPECT_NE(b.valid_loss, c.valid_loss);  // without the file the seed draws other weights

  // "a" holds a checkpoint now: resuming it while asking for initial weights is ambiguous, so refused
  expect_error_naming([&] { run("a", 1, init_file, true); }, {"--init-weights", "init.safetensors", "--no-resume"});
  train::LMTrainResult again = run("a", 1, init_file, false);  // --no-resume: a fresh run from the file
  EXPECT_EQ(again.valid_loss, a.valid_loss);
  fs::remove_all(dir);
}
