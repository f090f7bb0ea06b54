// src/data/parallel_text.cc — parallel corpora and token-count batching with length buckets.
#include "attn/data/parallel_text.h"

#include <algorithm>
#include <fstream>
#include <numeric>
#include <stdexcept>

#include "attn/random.h"

namespace attn::data {

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(f, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(std::move(line));
  }
  if (f.bad()) throw std::runtime_error("error reading " + path);
  return lines;
}

namespace {
bool blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }
}  // namespace

ParallelCorpus ParallelCorpus::from_lines(const std::vector<std::string>& src, const std::vector<std::string>& tgt,
                                          const text::SentencePiece& sp, const ParallelTextOptions& o) {
  if (src.size() != tgt.size())
    throw std::invalid_argument("parallel text: " + std::to_string(src.size()) + " source lines but " +
                                std::to_string(tgt.size()) + " target lines");
  ParallelCorpus c;
  for (size_t i = 0; i < src.size(); ++i) {
    if (blank(src[i]) || blank(tgt[i])) {
      ++c.dropped_empty;
      continue;
    }
    std::vector<int> s = sp.encode(src[i]), t = sp.encode(tgt[i]);
    if (int64_t(s.size()) + 1 > o.max_len || int64_t(t.size()) + 1 > o.max_len) {
      ++c.dropped_long;
      continue;
    }
    c.src.emplace_back(s.begin(), s.end());
    c.tgt.emplace_back(t.begin(), t.end());
    c.line.push_back(int64_t(i) + 1);
  }
  return c;
}

ParallelCorpus ParallelCorpus::load(const std::string& src_path, const std::string& tgt_path,
                                    const text::SentencePiece& sp, const ParallelTextOptions& o) {
  std::vector<std::string> s = read_lines(src_path), t = read_lines(tgt_path);
  if (s.size() != t.size())
    throw std::invalid_argument("parallel text: " + src_path + " has " + std::to_string(s.size()) + " lines but " +
                                tgt_path + " has " + std::to_string(t.size()));
  return from_lines(s, t, sp, o);
}

TokenBatcher::TokenBatcher(const ParallelCorpus& corpus, const TokenBatchOptions& o) : corpus_(corpus), o_(o) {
  if (o.max_tokens <= 0 || o.bucket_size <= 0) throw std::invalid_argument("TokenBatcher: max_tokens and bucket_size must be positive");
  if (corpus.size() == 0) throw std::invalid_argument("TokenBatcher: the corpus is empty");
}

const std::vector<std::vector<int64_t>>& TokenBatcher::plan(int64_t epoch) const {
  if (epoch == planned_epoch_) return batches_;
  const int64_t n = corpus_.size();
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  auto shuffle = [&](auto& v, uint64_t stream) {  // (std::vector<auto>& is a gcc extension)
    for (int64_t i = int64_t(v.size()) - 1; i > 0; --i) {  // Fisher-Yates with Philox(seed, stream, i)
      Philox4 r = philox4x32(o_.seed ^ (stream * 0x9E3779B97F4A7C15ull), uint64_t(i));
      uint64_t x = (uint64_t(r.v[0]) << 32) | r.v[1];
      std::swap(v[size_t(i)], v[size_t(x % uint64_t(i + 1))]);
    }
  };
  if (o_.shuffle) shuffle(order, uint64_t(2 * epoch + 1));
  batches_.clear();
  for (int64_t b = 0; b < n; b += o_.bucket_size) {
    auto first = order.begin() + b, last = order.begin() + std::min(n, b + o_.bucket_size);
    std::stable_sort(first, last, [&](int64_t x, int64_t y) {
      size_t lx = std::max(corpus_.src[x].size(), corpus_.tgt[x].size());
      size_t ly = std::max(corpus_.src[y].size(), corpus_.tgt[y].size());
      return lx != ly ? lx < ly : corpus_.src[x].size() < corpus_.src[y].size();
    });
    std::vector<int64_t> cur;
    int64_t max_s = 0, max_t = 0;
    for (auto it = first; it != last; ++it) {
      int64_t s = int64_t(corpus_.src[*it].size()) + 1, t = int64_t(corpus_.tgt[*it].size()) + 1;
      int64_t ns = std::max(max_s, s), nt = std::max(max_t, t);
      if (!cur.empty() && int64_t(cur.size() + 1) * (ns + nt) > o_.max_tokens) {
        batches_.push_back(std::move(cur));
        cur.clear();
        ns = s, nt = t;
      }
      cur.push_back(*it);
      max_s = ns, max_t = nt;
    }
    if (!cur.empty()) batches_.push_back(std::move(cur));
  }
  if (o_.shuffle) shuffle(batches_, uint64_t(2 * epoch + 2));
  planned_epoch_ = epoch;
  return batches_;
}

int64_t TokenBatcher::num_batches(int64_t epoch) const { return int64_t(plan(epoch).size()); }

TranslationBatch TokenBatcher::get(int64_t epoch, int64_t index) const {
  const auto& p = plan(epoch);
  if (index < 0 || index >= int64_t(p.size()))
    throw std::out_of_range("TokenBatcher: batch " + std::to_string(index) + " of epoch " + std::to_string(epoch) +
                            " does not exist (" + std::to_string(p.size()) + " batches)");
  return collate(corpus_, p[size_t(index)], o_);
}

TranslationBatch TokenBatcher::collate(const ParallelCorpus& c, const std::vector<int64_t>& idx,
                                       const TokenBatchOptions& o) {
  TranslationBatch b;
  b.indices = idx;
  const int64_t N = int64_t(idx.size());
  int64_t S = 0, T = 0;
  for (int64_t i : idx) {
    S = std::max<int64_t>(S, int64_t(c.src[i].size()) + 1);
    T = std::max<int64_t>(T, int64_t(c.tgt[i].size()) + 1);
  }
  std::vector<int64_t> src(size_t(N * S), o.pad_id), tin(size_t(N * T), o.pad_id), tout(size_t(N * T), o.pad_id);
  for (int64_t r = 0; r < N; ++r) {
    const auto& s = c.src[idx[r]];
    const auto& t = c.tgt[idx[r]];
    for (size_t j = 0; j < s.size(); ++j) src[size_t(r * S) + j] = s[j];
    src[size_t(r * S) + s.size()] = o.eos_id;
    tin[size_t(r * T)] = o.bos_id;
    for (size_t j = 0; j < t.size(); ++j) {
      tin[size_t(r * T) + j + 1] = t[j];
      tout[size_t(r * T) + j] = t[j];
    }
    tout[size_t(r * T) + t.size()] = o.eos_id;
    b.src_tokens += int64_t(s.size()) + 1;
    b.tgt_tokens += int64_t(t.size()) + 1;
  }
  b.src = from_vector(src, {N, S});
  b.tgt_in = from_vector(tin, {N, T});
  b.tgt_out = from_vector(tout, {N, T});
  return b;
}

}  // namespace attn::data
