// Character- and word-level vocabularies: building (order, min_freq, max_size), code-point splitting,
// Python str.split() word splitting, encode/decode, unknown tokens, save/load round trip, invalid UTF-8
// and corrupt vocabulary files named by file and line.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <unistd.h>

#include "attn/text/vocab.h"

namespace fs = std::filesystem;
using attn::text::Vocab;
using attn::text::VocabLevel;

namespace {

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("attn_vocab_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

void write(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f << s;
}

void expect_error(const std::function<void()>& f, const std::vector<std::string>& needles) {
  try {
    f();
    ADD_FAILURE() << "no exception";
  } catch (const std::exception& e) {
    for (const auto& n : needles) EXPECT_NE(std::string(e.what()).find(n), std::string::npos) << e.what();
  }
}

}  // namespace

TEST(Vocab, CharLevelOrderIsSpecialsThenCountThenBytes) {
  Vocab v = Vocab::build("abracadabra");
  const std::vector<std::string> want{"<pad>", "<unk>", "a", "b", "r", "c", "d"};
  EXPECT_EQ(v.tokens(), want);
  EXPECT_EQ(v.unk_id(), 1);
  EXPECT_EQ(v.num_specials(), 2);
  EXPECT_EQ(v.encode("cab"), (std::vector<int64_t>{5, 2, 3}));
  EXPECT_EQ(v.decode({4, 2, 6}), "rad");
}

TEST(Vocab, ACharacterIsACodePoint) {
  const std::string text = "na\xC3\xAFve \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x98\x80!";  // "naïve 日本 😀!"
  Vocab v = Vocab::build(text, {.specials = {}, .unk_token = ""});
  const std::vector<std::string> pieces = v.split(text);
  const std::vector<std::string> want{"n", "a", "\xC3\xAF", "v", "e", " ", "\xE6\x97\xA5", "\xE6\x9C\xAC", " ",
                                      "\xF0\x9F\x98\x80", "!"};
  EXPECT_EQ(pieces, want);
  std::vector<int64_t> ids = v.encode(text);
  EXPECT_EQ(ids.size(), 11u);
  EXPECT_EQ(v.decode(ids), text);
  EXPECT_EQ(v.token(ids[9]), "\xF0\x9F\x98\x80");
  // No unknown token: an unseen character is an error naming it and its byte offset.
  expect_error([&] { v.encode("ax", "prompt"); }, {"prompt", "character 'x' at byte offset 1", "no unknown token"});
}

TEST(Vocab, UnknownAndStrict) {
  Vocab v = Vocab::build("hello");
  EXPECT_EQ(v.encode("hex"), (std::vector<int64_t>{v.id("h"), v.id("e"), v.unk_id()}));
  expect_error([&] { v.encode_strict("he\xC3\xA9", "prompt"); }, {"prompt: character '\xC3\xA9' at byte offset 2"});
  EXPECT_EQ(v.id("z"), -1);
  expect_error([&] { v.token(99); }, {"id 99"});
  expect_error([&] { v.decode({0, -1}); }, {"id -1"});
}

TEST(Vocab, MinFreqAndMaxSize) {
  Vocab v = Vocab::build("aaaabbbccd", {.min_freq = 2});
  EXPECT_EQ(v.tokens(), (std::vector<std::string>{"<pad>", "<unk>", "a", "b", "c"}));
  Vocab w = Vocab::build("aaaabbbccd", {.max_size = 4});
  EXPECT_EQ(w.tokens(), (std::vector<std::string>{"<pad>", "<unk>", "a", "b"}));
  expect_error([] { Vocab::build("ab", {.max_size = 1}); }, {"max_size 1"});
  expect_error([] { Vocab::build("ab", {.min_freq = 0}); }, {"min_freq"});
  expect_error([] { Vocab::build("ab", {.specials = {"<pad>"}, .unk_token = "<unk>"}); }, {"not one of the specials"});
}

TEST(Vocab, WordLevelSplitsLikePythonStrSplit) {
  const std::string text = "the cat\tsat\n\n the\xC2\xA0" "end\xE3\x80\x80the  ";  // U+00A0, U+3000 are spaces
  Vocab v = Vocab::build(text, {.level = VocabLevel::Word});
  EXPECT_EQ(v.split(text), (std::vector<std::string>{"the", "cat", "sat", "the", "end", "the"}));
  EXPECT_EQ(v.tokens(), (std::vector<std::string>{"<pad>", "<unk>", "the", "cat", "end", "sat"}));
  EXPECT_EQ(v.encode("the dog sat"), (std::vector<int64_t>{2, 1, 5}));
  EXPECT_EQ(v.decode({2, 3, 5}), "the cat sat");
}

TEST(Vocab, SaveLoadRoundTripWithAwkwardTokens) {
  const fs::path dir = temp_dir();
  const std::string text = "a b\\c\n\td\x01\x7F\xC3\xA9\r";
  Vocab v = Vocab::build(text, {.specials = {"<pad>", "<unk>", "<bos> x"}});
  v.save((dir / "v.txt").string());
  Vocab w = Vocab::load((dir / "v.txt").string());
  EXPECT_EQ(w.tokens(), v.tokens());
  EXPECT_EQ(w.unk_id(), v.unk_id());
  EXPECT_EQ(w.num_specials(), 3);
  EXPECT_EQ(w.level(), VocabLevel::Char);
  EXPECT_EQ(w.encode(text), v.encode(text));
  EXPECT_EQ(w.serialize(), v.serialize());
  EXPECT_FALSE(fs::exists(dir / ("v.txt.tmp" + std::to_string(::getpid()))));
  Vocab words = Vocab::build("x y y", {.level = VocabLevel::Word, .specials = {}, .unk_token = ""});
  words.save((dir / "w.txt").string());
  Vocab words2 = Vocab::load((dir / "w.txt").string());
  EXPECT_EQ(words2.level(), VocabLevel::Word);
  EXPECT_EQ(words2.unk_id(), -1);
  EXPECT_EQ(words2.tokens(), (std::vector<std::string>{"y", "x"}));
  fs::remove_all(dir);
}

TEST(Vocab, InvalidUtf8NamesFileAndByteOffset) {
  const fs::path dir = temp_dir();
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"ab\xC3(", "byte offset 2 (byte 0xC3)"},           // lead byte without continuation
      {"abc\xC0\xAF", "byte offset 3 (byte 0xC0)"},       // overlong '/'
      {"\xED\xA0\x80", "byte offset 0 (byte 0xED)"},      // UTF-16 surrogate
      {"xy\xF4\x90\x80\x80", "byte offset 2 (byte 0xF4)"},  // above U+10FFFF
      {"ok\xE6\x97", "byte offset 2 (byte 0xE6)"},        // truncated at the end
      {"\x80", "byte offset 0 (byte 0x80)"},              // stray continuation byte
  };
  for (const auto& [bytes, where] : bad) {
    const fs::path p = dir / "bad.txt";
    write(p, bytes);
    expect_error([&] { Vocab::build_from_files({p.string()}); }, {p.string(), "invalid UTF-8 at " + where});
    expect_error([&] { Vocab::build(bytes, {.level = VocabLevel::Word}, "corpus"); },
                 {"corpus: invalid UTF-8 at " + where});
  }
  Vocab v = Vocab::build("abc");
  expect_error([&] { v.encode("a\xFF", "prompt"); }, {"prompt: invalid UTF-8 at byte offset 1"});
  expect_error([&] { Vocab::build_from_files({(dir / "missing.txt").string()}); }, {"missing.txt: cannot open"});
  fs::remove_all(dir);
}

TEST(Vocab, CorruptFileNamesFileAndLine) {
  const std::string head = "attn-vocab 1\nlevel=char\nspecials=1\nunk=<unk>\n";
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"", ":1: the file ends before the header line"},
      {"attn-vocab 2\n", ":1: not an attn vocabulary file"},
      {"attn-vocab 1\nlevel=byte\n", ":2: level must be 'char' or 'word'"},
      {"attn-vocab 1\nlevel=char\nspecials=-1\n", ":3: specials must be a non-negative integer"},
      {"attn-vocab 1\nlevel=char\nspecials=1\nunk <unk>\n", ":4: expected 'unk=...'"},
      {head + "size=x\n", ":5: size must be a non-negative integer"},
      {head + "size=99999999999999999\n", ":5: size must be"},
      {head + "size=3\n<unk>\na\n", ":8: the file ends after 2 of 3 tokens"},
      {head + "size=2\n<unk>\na\nb\n", ":8: more token lines than size=2"},
      {head + "size=3\n<unk>\na\na\n", ":8: duplicate token 'a' (also on line 7)"},
      {head + "size=2\n<unk>\nab\n", ":7: a char-level token must be one code point"},
      {head + "size=2\n<unk>\n\n", ":7: empty token"},
      {head + "size=2\n<unk>\na\\q\n", ":7: unknown escape '\\q' at column 2"},
      {head + "size=2\n<unk>\n\\x4\n", ":7: \\x needs two hex digits"},
      {head + "size=2\n<unk>\n\\xC3\n", ":7: token: invalid UTF-8"},
      {head + "size=2\n<unk>\na\r\n", ":7: raw control byte 0x0D"},
      {head + "size=2\n<unk>\n\xC3\n", ":7: invalid UTF-8 at byte offset 58"},
      {head + "size=0\n", ":3: specials=1 exceeds size=0"},
      {"attn-vocab 1\nlevel=char\nspecials=0\nunk=<unk>\nsize=1\na\n", ":4: the unknown token '<unk>' is not in"},
      {"attn-vocab 1\nlevel=word\nspecials=0\nunk=\nsize=1\na\\sb\n",
       ":6: a word-level token cannot contain whitespace"},
  };
  const fs::path dir = temp_dir();
  for (const auto& [content, want] : bad) {
    SCOPED_TRACE(want);
    write(dir / "corrupt.txt", content);
    expect_error([&] { Vocab::load((dir / "corrupt.txt").string()); }, {(dir / "corrupt.txt").string() + want});
  }
  expect_error([&] { Vocab::load((dir / "none.txt").string()); }, {"none.txt: cannot open"});
  fs::remove_all(dir);
}
