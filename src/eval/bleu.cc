// src/eval/bleu.cc — sacreBLEU-compatible BLEU (13a) and chrF.
#include "attn/eval/bleu.h"

#include <cmath>
#include <cstdio>
#include <map>
#include <stdexcept>
#include <unordered_map>

namespace attn::eval {
namespace {

// ---- UTF-8 helpers: Python's str.split()/rstrip() whitespace, code points for chrF
uint32_t decode(const std::string& s, size_t& i) {
  unsigned char c = s[i];
  int len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
  if (i + len > s.size()) len = 1;
  uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
  for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
  i += len;
  return cp;
}

bool is_py_space(uint32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

// Splits on Python whitespace; returns the tokens as UTF-8 strings.
std::vector<std::string> py_split(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < s.size();) {
    size_t start = i;
    uint32_t cp = decode(s, i);
    if (is_py_space(cp)) {
      if (!cur.empty()) out.push_back(std::move(cur)), cur.clear();
    } else {
      cur.append(s, start, i - start);
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

std::string py_rstrip(const std::string& s) {
  size_t end = 0;
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = decode(s, i);
    if (!is_py_space(cp)) end = i;
  }
  return s.substr(0, end);
}

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t p = s.find(from); p != std::string::npos; p = s.find(from, p + to.size())) s.replace(p, from.size(), to);
}

bool is_13a_punct(unsigned char c) {
  // [\{-\~\[-\` -\&\(-\+\:-\@\/]
  return (c >= '{' && c <= '~') || (c >= '[' && c <= '`') || (c >= ' ' && c <= '&') || (c >= '(' && c <= '+') ||
         (c >= ':' && c <= '@') || c == '/';
}
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

}  // namespace

std::string tokenize_13a(const std::string& input) {
  std::string line = input;
  replace_all(line, "<skipped>", "");
  replace_all(line, "-\n", "");
  replace_all(line, "\n", " ");
  if (line.find('&') != std::string::npos) {
    replace_all(line, "&quot;", "\"");
    replace_all(line, "&amp;", "&");
    replace_all(line, "&lt;", "<");
    replace_all(line, "&gt;", ">");
  }
  line = " " + line + " ";
  // Each rule is a left-to-right, non-overlapping substitution like Python's re.sub.
  std::string a;
  for (unsigned char c : line) {
    if (is_13a_punct(c)) a += ' ', a += char(c), a += ' ';
    else a += char(c);
  }
  std::string b;  // ([^0-9])([\.,]) -> '\1 \2 '
  for (size_t i = 0; i < a.size();) {
    if (i + 1 < a.size() && !is_digit(a[i]) && (a[i + 1] == '.' || a[i + 1] == ',')) {
      b += a[i], b += ' ', b += a[i + 1], b += ' ';
      i += 2;
    } else {
      b += a[i++];
    }
  }
  std::string c;  // ([\.,])([^0-9]) -> ' \1 \2'
  for (size_t i = 0; i < b.size();) {
    if (i + 1 < b.size() && (b[i] == '.' || b[i] == ',') && !is_digit(b[i + 1])) {
      c += ' ', c += b[i], c += ' ', c += b[i + 1];
      i += 2;
    } else {
      c += b[i++];
    }
  }
  std::string d;  // ([0-9])(-) -> '\1 \2 '
  for (size_t i = 0; i < c.size();) {
    if (i + 1 < c.size() && is_digit(c[i]) && c[i + 1] == '-') {
      d += c[i], d += ' ', d += '-', d += ' ';
      i += 2;
    } else {
      d += c[i++];
    }
  }
  std::vector<std::string> toks = py_split(d);
  std::string out;
  for (size_t i = 0; i < toks.size(); ++i) out += (i ? " " : "") + toks[i];
  return out;
}

namespace {
void check_streams(const char* what, const std::vector<std::string>& hyps,
                   const std::vector<std::vector<std::string>>& refs) {
  if (refs.empty()) throw std::invalid_argument(std::string(what) + ": no reference stream given");
  for (size_t r = 0; r < refs.size(); ++r)
    if (refs[r].size() != hyps.size())
      throw std::invalid_argument(std::string(what) + ": reference stream " + std::to_string(r) + " has " +
                                  std::to_string(refs[r].size()) + " lines, hypotheses have " +
                                  std::to_string(hyps.size()));
}

using NgramCounts = std::map<std::vector<std::string>, int64_t>;
NgramCounts word_ngrams(const std::vector<std::string>& toks) {
  NgramCounts c;
  for (size_t n = 1; n <= 4; ++n)
    for (size_t i = 0; i + n <= toks.size(); ++i) c[std::vector<std::string>(toks.begin() + i, toks.begin() + i + n)]++;
  return c;
}
}  // namespace

BleuScore corpus_bleu(const std::vector<std::string>& hyps, const std::vector<std::vector<std::string>>& refs) {
  check_streams("corpus_bleu", hyps, refs);
  BleuScore s;
  for (size_t i = 0; i < hyps.size(); ++i) {
    std::vector<std::string> h = py_split(tokenize_13a(py_rstrip(hyps[i])));
    NgramCounts ref_max;
    int64_t closest_diff = -1, closest_len = -1;
    for (const auto& stream : refs) {
      std::vector<std::string> r = py_split(tokenize_13a(py_rstrip(stream[i])));
      int64_t len = int64_t(r.size()), diff = std::llabs(int64_t(h.size()) - len);
      if (closest_diff == -1 || diff < closest_diff || (diff == closest_diff && len < closest_len))
        closest_diff = diff, closest_len = len;
      for (auto& [g, c] : word_ngrams(r)) ref_max[g] = std::max(ref_max[g], c);
    }
    s.sys_len += int64_t(h.size());
    s.ref_len += closest_len;
    for (auto& [g, c] : word_ngrams(h)) {
      size_t n = g.size() - 1;
      s.total[n] += c;
      auto it = ref_max.find(g);
      if (it != ref_max.end()) s.correct[n] += std::min(c, it->second);
    }
  }
  if (s.sys_len < s.ref_len) s.bp = s.sys_len > 0 ? std::exp(1.0 - double(s.ref_len) / double(s.sys_len)) : 0.0;
  bool any = false;
  for (int64_t c : s.correct) any = any || c > 0;
  if (!any) return s;
  double smooth = 1.0, log_sum = 0.0;
  int order = 4;
  for (int n = 0; n < 4; ++n) {
    if (s.total[n] == 0) break;
    if (s.correct[n] == 0) {
      smooth *= 2;
      s.precisions[n] = 100.0 / (smooth * double(s.total[n]));
    } else {
      s.precisions[n] = 100.0 * double(s.correct[n]) / double(s.total[n]);
    }
  }
  for (int n = 0; n < order; ++n) log_sum += s.precisions[n] == 0.0 ? -9999999999.0 : std::log(s.precisions[n]);
  s.score = s.bp * std::exp(log_sum / order);
  return s;
}

std::string BleuScore::signature() const {
  char buf[256];
  std::snprintf(buf, sizeof buf, "BLEU = %.2f %.1f/%.1f/%.1f/%.1f (BP = %.3f ratio = %.3f hyp_len = %lld ref_len = %lld)",
                score, precisions[0], precisions[1], precisions[2], precisions[3], bp,
                ref_len ? double(sys_len) / double(ref_len) : 0.0, (long long)sys_len, (long long)ref_len);
  return buf;
}

namespace {
// Character n-gram counts (orders 1..6) of a line with all Python whitespace removed.
std::array<std::unordered_map<std::u32string, int64_t>, 6> char_ngrams(const std::string& line) {
  std::u32string cps;
  for (size_t i = 0; i < line.size();) {
    uint32_t cp = decode(line, i);
    if (!is_py_space(cp)) cps.push_back(cp);
  }
  std::array<std::unordered_map<std::u32string, int64_t>, 6> out;
  for (size_t n = 1; n <= 6; ++n)
    for (size_t i = 0; i + n <= cps.size(); ++i) out[n - 1][cps.substr(i, n)]++;
  return out;
}

double chrf_f_score(const std::array<int64_t, 18>& st) {
  const double beta2 = 4.0, eps = 1e-16;
  double avg_p = 0, avg_r = 0;
  int eff = 0;
  for (int i = 0; i < 6; ++i) {
    int64_t nh = st[3 * i], nr = st[3 * i + 1], nm = st[3 * i + 2];
    double p = nh > 0 ? double(nm) / double(nh) : eps;
    double r = nr > 0 ? double(nm) / double(nr) : eps;
    if (nh > 0 && nr > 0) avg_p += p, avg_r += r, ++eff;
  }
  if (eff == 0) return 0.0;
  avg_p /= eff;
  avg_r /= eff;
  if (avg_p + avg_r == 0) return 0.0;
  return 100.0 * (1 + beta2) * avg_p * avg_r / (beta2 * avg_p + avg_r);
}
}  // namespace

ChrfScore corpus_chrf(const std::vector<std::string>& hyps, const std::vector<std::vector<std::string>>& refs) {
  check_streams("corpus_chrf", hyps, refs);
  std::array<int64_t, 18> total{};
  for (size_t i = 0; i < hyps.size(); ++i) {
    auto h = char_ngrams(hyps[i]);
    std::array<int64_t, 18> best{};
    double best_f = -1.0;
    for (const auto& stream : refs) {  // the reference with the best sentence-level F wins
      auto r = char_ngrams(stream[i]);
      std::array<int64_t, 18> st{};
      for (int n = 0; n < 6; ++n) {
        int64_t nh = 0, nr = 0, nm = 0;
        for (auto& [g, c] : h[n]) {
          nh += c;
          auto it = r[n].find(g);
          if (it != r[n].end()) nm += std::min(c, it->second);
        }
        for (auto& [g, c] : r[n]) nr += c;
        st[3 * n] = nh, st[3 * n + 1] = nr, st[3 * n + 2] = nm;
      }
      double f = chrf_f_score(st);
      if (f > best_f) best_f = f, best = st;
    }
    for (int k = 0; k < 18; ++k) total[k] += best[k];
  }
  return {chrf_f_score(total)};
}

}  // namespace attn::eval
