// tests/test_generate_cli.cc — `attn generate --model DIR` on a Hugging Face GPT-2 directory: greedy
// output equal to transformers' generate (tests/fixtures/hf_models/gpt2_cli, made by
// tests/make_gpt2_cli_fixture.py), seeded sampling, and clear errors for directories it cannot run.
#include <gtest/gtest.h>
#include <stdio.h>
#include <sys/wait.h>

#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

#ifdef ATTN_CLI_PATH
const std::string kDir = std::string(ATTN_FIXTURE_DIR) + "/hf_models/gpt2_cli";

struct CliRun {
  int status = -1;
  std::string out;  // stdout (stderr goes to stdout too when asked)
};

CliRun run_cli(const std::string& args, bool with_stderr = false) {
  const std::string cmd = std::string(ATTN_CLI_PATH) + " generate " + args + (with_stderr ? " 2>&1" : " 2>/dev/null");
  CliRun r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

nlohmann::json expected() {
  std::ifstream f(kDir + "/expected.json");
  return nlohmann::json::parse(f);
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }  // the fixture's prompts have no quotes

nlohmann::json generate_json(const std::string& prompt, const std::string& extra) {
  const CliRun r = run_cli("--model " + kDir + " --prompt " + quoted(prompt) + " --format json --threads 1 " + extra);
  EXPECT_EQ(r.status, 0) << r.out;
  return nlohmann::json::parse(r.out.empty() ? std::string("{}") : r.out);
}

TEST(GenerateCli, GreedyGPT2EqualsTransformersGenerate) {
  const nlohmann::json e = expected();
  const std::string length = " --length " + std::to_string(e.at("max_new_tokens").get<int>());
  ASSERT_GE(e.at("cases").size(), 3u);
  for (const auto& c : e.at("cases")) {
    const std::string prompt = c.at("prompt").get<std::string>();
    const nlohmann::json got = generate_json(prompt, "--greedy" + length);
    EXPECT_EQ(got.value("ids", std::vector<int64_t>{}), c.at("ids").get<std::vector<int64_t>>()) << prompt;
    EXPECT_EQ(got.value("text", std::string()), c.at("text").get<std::string>()) << prompt;
    // the default text format prints the same text
    const CliRun text = run_cli("--model " + kDir + " --prompt " + quoted(prompt) + " --greedy --threads 1" + length);
    EXPECT_EQ(text.status, 0);
    EXPECT_EQ(text.out, c.at("text").get<std::string>() + "\n") << prompt;
  }
}

TEST(GenerateCli, SampledGPT2DependsOnlyOnTheSeed) {
  const nlohmann::json c = expected().at("cases").at(0);
  const std::string prompt = c.at("prompt").get<std::string>(), opts = "--length 12 --temperature 1.5 --top-p 0.95";
  const nlohmann::json a = generate_json(prompt, opts + " --seed 3");
  const nlohmann::json b = generate_json(prompt, opts + " --seed 3");
  const nlohmann::json other = generate_json(prompt, opts + " --seed 4");
  EXPECT_EQ(a.at("ids"), b.at("ids"));
  EXPECT_NE(a.at("ids"), other.at("ids"));
  const auto ids = a.at("ids").get<std::vector<int64_t>>();
  const auto prompt_ids = c.at("prompt_ids").get<std::vector<int64_t>>();
  ASSERT_GE(ids.size(), prompt_ids.size());
  EXPECT_TRUE(std::equal(prompt_ids.begin(), prompt_ids.end(), ids.begin()));  // the prompt comes back first
  // top-k 1 sampling keeps only the argmax: greedy's tokens whatever the seed
  const nlohmann::json k1 = generate_json(prompt, "--length 12 --top-k 1 --seed 9");
  EXPECT_EQ(k1.at("ids"), c.at("ids"));
}

TEST(GenerateCli, RejectsWhatItCannotRun) {
  const std::string fixtures = std::string(ATTN_FIXTURE_DIR) + "/hf_models";
  CliRun r = run_cli("--model " + fixtures + "/bert_tiny --prompt hi", true);  // a BERT directory
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("model_type"), std::string::npos) << r.out;
  r = run_cli("--model " + kDir + " --prompt hi --top-p 1.5", true);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("top_p"), std::string::npos) << r.out;
  r = run_cli("--model " + kDir + " --prompt hi --length 100 --greedy", true);  // past n_positions (64)
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("n_positions"), std::string::npos) << r.out;
  r = run_cli("--model /nonexistent/run --prompt hi --format json", true);  // not an HF directory
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("--format json"), std::string::npos) << r.out;
}
#endif  // ATTN_CLI_PATH

}  // namespace
