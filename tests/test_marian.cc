// Hugging Face Marian directories: a MarianMTModel saved by transformers (tests/make_marian_fixtures.py)
// runs in attn with transformers' token ids, logits and greedy output; an attn run trained with Marian's
// architecture exports to a directory that imports back to the same model; bad directories and runs
// that Marian cannot express give errors naming the file, key or option.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "attn/autograd.h"
#include "attn/models/marian.h"
#include "attn/ops.h"
#include "translation_corpus.h"

namespace fs = std::filesystem;
using namespace attn;
using nlohmann::json;

namespace {

const std::string kMarianDir = std::string(ATTN_FIXTURE_DIR) + "/marian_tiny";

json read_json(const fs::path& p) {
  std::ifstream f(p);
  return json::parse(f);
}

void write_json(const fs::path& p, const json& j) { std::ofstream(p) << j.dump(); }

std::vector<int64_t> ids_of(const json& j) { return j.get<std::vector<int64_t>>(); }

Tensor row_tensor(const std::vector<int64_t>& ids) { return from_vector(ids, {1, int64_t(ids.size())}); }

// The error message of fn(), or "" when it does not throw.
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name)
      : path(fs::temp_directory_path() / ("attn_marian_" + name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

}  // namespace

TEST(MarianImport, TokenizerMatchesTransformers) {
  json expected = read_json(std::string(ATTN_FIXTURE_DIR) + "/marian_tiny_expected.json");
  auto tok = models::MarianTokenizer::load(kMarianDir);
  EXPECT_EQ(tok->vocab_size(), expected["vocab_size"].get<int>());
  EXPECT_EQ(tok->pad_id(), expected["pad"].get<int>());
  EXPECT_EQ(tok->eos_id(), expected["eos"].get<int>());
  for (const json& c : expected["cases"]) {
    std::vector<int> ids = tok->encode_source(c["source"].get<std::string>());
    ids.push_back(tok->eos_id());
    EXPECT_EQ(std::vector<int64_t>(ids.begin(), ids.end()), ids_of(c["input_ids"])) << c["source"];
    std::vector<int64_t> out = ids_of(c["output_ids"]);
    EXPECT_EQ(tok->decode_target(std::vector<int>(out.begin(), out.end())), c["decoded"].get<std::string>());
  }
}

TEST(MarianImport, LogitsAndGreedyOutputMatchTransformers) {
  json expected = read_json(std::string(ATTN_FIXTURE_DIR) + "/marian_tiny_expected.json");
  train::TranslationSession s = models::load_hf_marian(kMarianDir);
  models::Translator& m = s.model();
  EXPECT_EQ(m.options.bos_id, m.options.pad_id) << "Marian decodes from pad";
  EXPECT_EQ(m.options.activation, nn::Activation::SiLU);
  NoGradGuard ng;
  int checked_eos = 0;
  for (const json& c : expected["cases"]) {
    Tensor src = row_tensor(ids_of(c["input_ids"]));
    std::vector<int64_t> dec_in = ids_of(c["decoder_input_ids"]);
    Tensor logits = m.forward(src, row_tensor(dec_in)).select(0, 0);  // (T, V)
    std::vector<float> got = logits.to_vector<float>();
    size_t k = 0;
    double worst = 0;
    for (const json& row : c["logits"])
      for (const json& v : row) worst = std::max(worst, std::abs(double(got[k++]) - v.get<double>()));
    EXPECT_EQ(k, got.size());
    EXPECT_LT(worst, 1e-4) << c["source"];
    auto dec = m.start_decoding(src);
    auto greedy = models::greedy_decode(*dec, {.max_len = expected["max_new_tokens"].get<int64_t>()});
    EXPECT_EQ(greedy[0], ids_of(c["output_ids"])) << c["source"];
    checked_eos += int(dec_in.back() == expected["eos"].get<int64_t>());
  }
  EXPECT_GE(checked_eos, 1) << "the fixture should have an output that ends with EOS";
  // the session translates text end to end (empty lines stay empty)
  auto out = s.translate({"", expected["cases"][3]["source"].get<std::string>()}, {.beam_size = 1});
  EXPECT_EQ(out[0], "");
  EXPECT_EQ(out[1], expected["cases"][3]["decoded"].get<std::string>());
}

TEST(MarianImport, BadDirectoriesNameTheFileAndKey) {
  TempDir t("bad");
  auto fresh = [&] {
    fs::remove_all(t.path / "m");
    fs::copy(kMarianDir, t.path / "m");
    return (t.path / "m").string();
  };
  auto load_error = [&](const std::string& dir) { return error_of([&] { models::load_hf_marian(dir); }); };
  const std::string ok = fresh();
  EXPECT_TRUE(models::is_hf_marian_dir(ok));
  EXPECT_FALSE(models::is_hf_marian_dir(std::string(ATTN_FIXTURE_DIR)));
  for (const char* file : {"vocab.json", "source.spm", "target.spm", "model.safetensors", "config.json"}) {
    std::string d = fresh();
    fs::remove(fs::path(d) / file);
    EXPECT_NE(load_error(d).find(file), std::string::npos) << file << ": " << load_error(d);
  }
  {  // a vocabulary from another model: <pad> at another id
    std::string d = fresh();
    json v = read_json(fs::path(d) / "vocab.json");
    std::string other;  // swap <pad>'s id with an ordinary piece's
    for (const auto& [piece, id] : v.items())
      if (piece[0] != '<') other = piece;
    const int other_id = v[other].get<int>();
    v[other] = v["<pad>"].get<int>();
    v["<pad>"] = other_id;
    write_json(fs::path(d) / "vocab.json", v);
    std::string e = load_error(d);
    EXPECT_NE(e.find("pad_token_id"), std::string::npos) << e;
    EXPECT_NE(e.find("vocab.json"), std::string::npos) << e;
  }
  {  // a vocabulary with fewer entries than the model
    std::string d = fresh();
    json v = read_json(fs::path(d) / "vocab.json");
    json cfg = read_json(fs::path(d) / "config.json");
    cfg["vocab_size"] = cfg["vocab_size"].get<int>() + 5;
    cfg["decoder_vocab_size"] = cfg["vocab_size"];
    write_json(fs::path(d) / "config.json", cfg);
    std::string e = load_error(d);
    EXPECT_NE(e.find("vocab_size"), std::string::npos) << e;
  }
  const std::pair<const char*, json> bad_config[] = {
      {"d_model", nullptr}, {"d_model", "sixteen"}, {"activation_function", "gelu_new"},
      {"share_encoder_decoder_embeddings", false}, {"scale_embedding", false}, {"encoder_ffn_dim", 64}};
  for (const auto& [key, value] : bad_config) {
    std::string d = fresh();
    json cfg = read_json(fs::path(d) / "config.json");
    if (value.is_null()) cfg.erase(key); else cfg[key] = value;
    write_json(fs::path(d) / "config.json", cfg);
    std::string e = load_error(d);
    EXPECT_NE(e.find(key), std::string::npos) << key << ": " << e;
  }
}

// An attn run with Marian's architecture, exported and imported back: the same model (token ids rotated
// so that pad is last, model dimension permuted), logits equal to rounding and the same greedy tokens.
TEST(MarianExport, RoundTripThroughTheHfDirectoryIsTheSameModel) {
  TempDir t("export");
  test_corpus::write_word_corpus(t.path / "train", 200, 7);
  test_corpus::write_word_corpus(t.path / "dev", 20, 99);
  auto o = test_corpus::tiny_translator_options(t.path / "train", t.path / "dev", t.path / "run");
  o.model.final_norm = false;
  o.model.bos_id = o.model.pad_id;
  o.max_steps = 30;
  o.eval_every = 30;
  o.eval_sentences = 5;
  train::train_translator(o);
  const std::string hf = (t.path / "hf").string();
  models::export_hf_marian(o.out_dir, hf);
  for (const char* f : {"config.json", "generation_config.json", "model.safetensors", "source.spm", "target.spm",
                        "vocab.json", "tokenizer_config.json"})
    EXPECT_TRUE(fs::exists(fs::path(hf) / f)) << f;
  train::TranslationSession a = train::TranslationSession::load(o.out_dir);
  train::TranslationSession b = models::load_hf_marian(hf);
  const int64_t V = a.model().options.vocab_size, pad = a.model().options.pad_id;
  ASSERT_EQ(b.model().options.vocab_size, V);
  EXPECT_EQ(b.model().options.pad_id, V - 1);
  auto to_hf = [&](int64_t id) { return id == pad ? V - 1 : (id < pad ? id : id - 1); };
  NoGradGuard ng;
  std::vector<std::string> lines = {"god light day", "king of bread", "water night man house"};
  for (const std::string& line : lines) {
    std::vector<int> sa = a.tokenizer().encode_source(line), sb = b.tokenizer().encode_source(line);
    ASSERT_EQ(sa.size(), sb.size());
    std::vector<int64_t> src_a, src_b;
    for (size_t i = 0; i < sa.size(); ++i) {
      EXPECT_EQ(to_hf(sa[i]), sb[i]) << line;
      src_a.push_back(sa[i]);
      src_b.push_back(sb[i]);
    }
    src_a.push_back(a.model().options.eos_id);
    src_b.push_back(b.model().options.eos_id);
    auto ga = models::greedy_decode(*a.model().start_decoding(row_tensor(src_a)), {.max_len = 12})[0];
    auto gb = models::greedy_decode(*b.model().start_decoding(row_tensor(src_b)), {.max_len = 12})[0];
    ASSERT_EQ(ga.size(), gb.size()) << line;
    std::vector<int64_t> tin_a = {pad}, tin_b = {V - 1};
    for (size_t i = 0; i < ga.size(); ++i) {
      EXPECT_EQ(to_hf(ga[i]), gb[i]) << line;
      tin_a.push_back(ga[i]);
      tin_b.push_back(gb[i]);
    }
    std::vector<float> la = a.model().forward(row_tensor(src_a), row_tensor(tin_a)).to_vector<float>();
    std::vector<float> lb = b.model().forward(row_tensor(src_b), row_tensor(tin_b)).to_vector<float>();
    double worst = 0;
    for (size_t r = 0; r < tin_a.size(); ++r)
      for (int64_t v = 0; v < V; ++v)
        worst = std::max(worst, std::abs(double(la[r * size_t(V) + size_t(v)]) - lb[r * size_t(V) + size_t(to_hf(v))]));
    EXPECT_LT(worst, 1e-4) << line;
    EXPECT_EQ(a.translate({line}, {.beam_size = 3}), b.translate({line}, {.beam_size = 3})) << line;
  }
}

TEST(MarianExport, RefusesRunsMarianCannotExpress) {
  TempDir t("refuse");
  test_corpus::write_word_corpus(t.path / "train", 100, 7);
  test_corpus::write_word_corpus(t.path / "dev", 10, 99);
  auto o = test_corpus::tiny_translator_options(t.path / "train", t.path / "dev", t.path / "run");
  o.max_steps = 1;
  o.eval_every = 1;
  o.eval_sentences = 2;
  train::train_translator(o);  // today's default: nn.Transformer's final norms, decoding from <s>
  std::string e = error_of([&] { models::export_hf_marian(o.out_dir, (t.path / "hf").string()); });
  EXPECT_NE(e.find("final LayerNorms"), std::string::npos) << e;
  EXPECT_NE(e.find("--marian"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(t.path / "hf" / "model.safetensors"));
}
