// attn/eval/bleu.h — corpus BLEU and chrF computed exactly as sacreBLEU 2.x does by default
// (BLEU: 13a tokenisation, 4-grams, 'exp' smoothing; chrF: 6 character orders, beta 2, whitespace
// removed), so scores are comparable with published ones.
//
//   std::vector<std::string> hyps = {...}, refs = {...};        // one line per segment
//   attn::eval::BleuScore b = attn::eval::corpus_bleu(hyps, {refs});
//   std::cout << b.score << " " << b.signature() << "\n";        // e.g. 27.31
//   double c = attn::eval::corpus_chrf(hyps, {refs}).score;
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace attn::eval {

// mteval-v13a tokenisation as in sacreBLEU's Tokenizer13a (UTF-8 in, UTF-8 out).
std::string tokenize_13a(const std::string& line);

struct BleuScore {
  double score = 0;                     // 0..100
  std::array<int64_t, 4> correct{}, total{};
  std::array<double, 4> precisions{};   // percent
  double bp = 1;                        // brevity penalty
  int64_t sys_len = 0, ref_len = 0;
  std::string signature() const;        // "BLEU = 27.31 60.1/33.0/20.2/12.9 (BP = 1.000 ratio = 1.012 hyp_len = ... ref_len = ...)"
};

// `refs` holds one or more reference streams, each as long as `hyps`.
BleuScore corpus_bleu(const std::vector<std::string>& hyps, const std::vector<std::vector<std::string>>& refs);

struct ChrfScore {
  double score = 0;  // 0..100
};
ChrfScore corpus_chrf(const std::vector<std::string>& hyps, const std::vector<std::vector<std::string>>& refs);

}  // namespace attn::eval
