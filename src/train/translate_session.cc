// src/train/translate_session.cc — TranslationSession's translation: the decoding options, batches by
// sentences and tokens (sorted by length, output in input order), over-long and invalid-UTF-8 lines,
// and the attention pictures of the chosen hypothesis.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "attn/autograd.h"
#include "attn/io/heatmap.h"
#include "attn/io/progress.h"
#include "attn/ops.h"
#include "attn/text/vocab.h"
#include "attn/train/translation.h"

namespace fs = std::filesystem;

namespace attn::train {

namespace {
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}
void require(bool ok, const std::string& what) {
  if (!ok) throw std::invalid_argument(what);
}
}  // namespace

void check_translate_options(const TranslateOptions& o) {
  require(o.beam_size >= 1, "--beam (beam_size) must be >= 1, got " + std::to_string(o.beam_size));
  require(o.n_best >= 1 && o.n_best <= o.beam_size, "--n-best (n_best) must be in 1..--beam (" +
                                                        std::to_string(o.beam_size) + "), got " + std::to_string(o.n_best));
  require(std::isfinite(o.length_penalty) && o.length_penalty >= 0,
          "--length-penalty must be a finite number >= 0, got " + num(o.length_penalty));
  require(std::isfinite(o.max_len_a) && o.max_len_a >= 0, "--max-len-a must be a finite number >= 0, got " + num(o.max_len_a));
  require(o.max_len_b >= 0, "--max-len-b must be >= 0, got " + std::to_string(o.max_len_b));
  require(o.max_len >= 0, "--max-len must be >= 0 (0: no cap), got " + std::to_string(o.max_len));
  require(std::isfinite(o.min_len_a) && o.min_len_a >= 0, "--min-len-a must be a finite number >= 0, got " + num(o.min_len_a));
  require(o.min_len_b >= 0, "--min-len (min_len_b) must be >= 0, got " + std::to_string(o.min_len_b));
  require(o.no_repeat_ngram_size >= 0, "--no-repeat-ngram-size must be >= 0 (0: off), got " + std::to_string(o.no_repeat_ngram_size));
  require(std::isfinite(o.repetition_penalty) && o.repetition_penalty > 0,
          "--repetition-penalty must be a finite number > 0 (1: off), got " + num(o.repetition_penalty));
  require(o.batch_size >= 1, "--batch-size must be >= 1, got " + std::to_string(o.batch_size));
  require(o.batch_tokens >= 0, "--batch-tokens must be >= 0 (0: off), got " + std::to_string(o.batch_tokens));
  if (o.sample) {
    require(o.beam_size == 1, "--sample draws one token at a time: use it with --beam 1, got --beam " + std::to_string(o.beam_size));
    require(std::isfinite(o.sampling.temperature) && o.sampling.temperature > 0,
            "--temperature must be a finite number > 0, got " + num(o.sampling.temperature));
    require(o.sampling.top_k >= 0, "--top-k must be >= 0 (0: off), got " + std::to_string(o.sampling.top_k));
    require(o.sampling.top_p > 0 && o.sampling.top_p <= 1, "--top-p must be in (0, 1], got " + num(o.sampling.top_p));
  }
}

struct TranslationSession::Segment {
  size_t line;               // index of its input line
  std::vector<int64_t> ids;  // source ids + EOS
};

std::vector<int64_t> TranslationSession::source_ids(const std::string& line) {
  std::vector<int> ids = tok_->encode_source(line);
  std::vector<int64_t> out(ids.begin(), ids.end());
  out.push_back(model_->options.eos_id);
  return out;
}

// One segment per non-blank line; a line beyond the model's positions gives several (or is cut).
std::vector<TranslationSession::Segment> TranslationSession::segments_of(const std::vector<std::string>& lines,
                                                                        bool split_long) {
  std::vector<Segment> segs;
  const size_t limit = size_t(std::max<int64_t>(1, model_->options.max_len - 1));  // tokens besides EOS
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (line.find_first_not_of(" \t\r\n") == std::string::npos) continue;
    const std::string where = "line " + std::to_string(i + 1);
    try {
      text::check_utf8(line, where);
    } catch (const std::runtime_error& e) {
      warnings_.push_back(std::string(e.what()) + ": translated without the invalid bytes");
    }
    std::vector<int64_t> ids = source_ids(line);
    ids.pop_back();  // EOS, added back per segment
    if (ids.size() <= limit) {
      ids.push_back(model_->options.eos_id);
      segs.push_back({i, std::move(ids)});
      continue;
    }
    ++truncated_;
    const size_t pieces = split_long ? (ids.size() + limit - 1) / limit : 1;
    warnings_.push_back(where + ": " + std::to_string(ids.size()) + " tokens, more than the model's " +
                        std::to_string(limit) + ": " +
                        (split_long ? "translated in " + std::to_string(pieces) + " pieces" : "truncated"));
    for (size_t p = 0; p < pieces; ++p) {
      std::vector<int64_t> part(ids.begin() + ptrdiff_t(p * limit), ids.begin() + ptrdiff_t(std::min(ids.size(), (p + 1) * limit)));
      part.push_back(model_->options.eos_id);
      segs.push_back({i, std::move(part)});
    }
  }
  return segs;
}

// Decodes the segments in batches of similar length; returns each segment's hypotheses, best first.
std::vector<std::vector<models::Hypothesis>> TranslationSession::decode_segments(const std::vector<Segment>& segs,
                                                                               const TranslateOptions& o) {
  NoGradGuard ng;
  model_->eval();
  const auto& mo = model_->options;
  std::vector<std::vector<models::Hypothesis>> out(segs.size());
  std::vector<size_t> order(segs.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return segs[a].ids.size() < segs[b].ids.size(); });
  std::unique_ptr<io::ProgressBar> bar;
  if (o.progress && !segs.empty())
    bar = std::make_unique<io::ProgressBar>(int64_t(segs.size()), io::ProgressBarOptions{.desc = "translate", .unit = "sent"});
  uint64_t batch_index = 0;
  for (size_t start = 0; start < order.size(); ++batch_index) {
    // extend the batch while it has room for one more sentence and its padded tokens
    size_t end = start + 1;
    int64_t S = int64_t(segs[order[start]].ids.size());
    while (end < order.size() && int64_t(end - start) < o.batch_size) {
      const int64_t S_next = std::max(S, int64_t(segs[order[end]].ids.size()));
      if (o.batch_tokens > 0 && int64_t(end - start + 1) * S_next > o.batch_tokens) break;
      S = S_next;
      ++end;
    }
    const int64_t N = int64_t(end - start);
    std::vector<int64_t> flat(static_cast<size_t>(N * S), mo.pad_id), max_lens(static_cast<size_t>(N)),
        min_lens(static_cast<size_t>(N));
    for (int64_t r = 0; r < N; ++r) {
      const auto& ids = segs[order[start + size_t(r)]].ids;
      std::copy(ids.begin(), ids.end(), flat.begin() + r * S);
      const double src_len = double(ids.size());
      int64_t most = int64_t(o.max_len_a * src_len) + o.max_len_b;
      if (o.max_len > 0) most = std::min(most, o.max_len);
      max_lens[size_t(r)] = std::clamp<int64_t>(most, 1, mo.max_len);
      min_lens[size_t(r)] = int64_t(o.min_len_a * src_len) + o.min_len_b;
    }
    const models::LogitsOptions lo{.repetition_penalty = o.repetition_penalty,
                                   .no_repeat_ngram_size = o.no_repeat_ngram_size, .min_lens = min_lens};
    auto dec = model_->start_decoding(from_vector(flat, {N, S}));
    if (o.beam_size <= 1) {
      models::SamplingOptions so = o.sampling;
      so.seed += batch_index;  // each batch its own stream: the same input and options give the same output
      std::vector<double> log_probs;
      auto g = models::greedy_decode(*dec, {.max_len = mo.max_len, .max_lens = max_lens, .logits = lo,
                                            .sample = o.sample, .sampling = so, .log_probs = &log_probs});
      for (int64_t r = 0; r < N; ++r) {  // scored like a beam hypothesis: sum log p / len^length_penalty
        const auto len = int64_t(g[size_t(r)].size()) + 1;
        const double lp = log_probs[size_t(r)];
        out[order[start + size_t(r)]] = {models::Hypothesis{std::move(g[size_t(r)]), lp,
                                                            lp / std::pow(double(len), o.length_penalty), true}};
      }
    } else {
      auto hyps = models::beam_search(*dec, {.beam_size = o.beam_size, .length_penalty = o.length_penalty,
                                             .n_best = o.n_best, .max_len = mo.max_len, .max_lens = max_lens,
                                             .logits = lo, .early_stopping = o.early_stopping});
      for (int64_t r = 0; r < N; ++r) out[order[start + size_t(r)]] = std::move(hyps[size_t(r)]);
    }
    if (bar) bar->update(N);
    start = end;
  }
  if (bar) bar->finish();
  return out;
}

std::vector<std::vector<std::pair<std::string, double>>> TranslationSession::translate_nbest(
    const std::vector<std::string>& lines, const TranslateOptions& o) {
  check_translate_options(o);
  warnings_.clear();
  std::vector<Segment> segs = segments_of(lines, o.split_long);
  std::vector<std::vector<models::Hypothesis>> hyps = decode_segments(segs, o);
  auto text = [&](const models::Hypothesis& h) {
    return tok_->decode_target(std::vector<int>(h.tokens.begin(), h.tokens.end()));
  };
  std::vector<std::vector<std::pair<std::string, double>>> out(lines.size());
  for (size_t k = 0; k < segs.size(); ++k) {
    auto& list = out[segs[k].line];
    const bool piece_of_long_line = (k > 0 && segs[k - 1].line == segs[k].line) ||
                                    (k + 1 < segs.size() && segs[k + 1].line == segs[k].line);
    if (!piece_of_long_line) {
      for (const auto& h : hyps[k]) list.emplace_back(text(h), h.score);
    } else if (!hyps[k].empty()) {  // pieces: their best translations joined, scores summed
      if (list.empty()) list.emplace_back("", 0.0);
      if (!list[0].first.empty()) list[0].first.push_back(' ');
      list[0].first.append(text(hyps[k][0]));
      list[0].second += hyps[k][0].score;
    }
  }
  for (auto& list : out)
    if (list.empty()) list = {{"", 0.0}};  // blank lines (and nothing decoded) give empty lines
  return out;
}

std::vector<std::string> TranslationSession::translate(const std::vector<std::string>& lines, const TranslateOptions& o) {
  TranslateOptions one = o;
  one.n_best = 1;
  auto nb = translate_nbest(lines, one);
  std::vector<std::string> out;
  out.reserve(nb.size());
  for (auto& v : nb) out.push_back(v[0].first);
  return out;
}

namespace {

// One picture per head and one of the mean over heads, for each layer of one kind of attention.
void emit_pictures(const std::vector<Tensor>& layers, const std::string& kind, const std::string& what,
                   const std::vector<std::string>& rows, const std::vector<std::string>& cols, const std::string& row_title,
                   const std::string& col_title, const std::string& dir, std::vector<std::string>& files) {
  const std::string of_layers = " of " + std::to_string(layers.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    const int64_t H = layers[l].size(0);  // (H, rows, cols)
    const std::string layer = what + ", layer " + std::to_string(l + 1) + of_layers;
    const std::string stem = dir + "/" + kind + "_layer" + std::to_string(l + 1);
    auto write = [&](const std::string& path, const std::vector<float>& w, const std::string& title) {
      io::write_heatmap_png(path, w, int(rows.size()), int(cols.size()),
                            {.row_labels = rows, .col_labels = cols, .title = title, .row_title = row_title,
                             .col_title = col_title});
      files.push_back(path);
    };
    for (int64_t h = 0; h < H; ++h)
      write(stem + "_head" + std::to_string(h + 1) + ".png", layers[l].select(0, h).to_vector<float>(),
            layer + ", head " + std::to_string(h + 1) + " of " + std::to_string(H));
    write(stem + "_mean.png", mean(layers[l], {0}).to_vector<float>(),
          layer + ", mean of the " + std::to_string(H) + " heads");
  }
}

}  // namespace

std::vector<std::string> TranslationSession::write_attention_pictures(const std::string& source, const std::string& dir,
                                                                     const TranslateOptions& o) {
  NoGradGuard ng;
  TranslateOptions one = o;
  one.n_best = 1;
  one.progress = false;
  check_translate_options(one);
  warnings_.clear();
  std::vector<Segment> segs = segments_of({source}, /*split_long=*/false);
  if (segs.empty()) throw std::invalid_argument("write_attention_pictures: the source sentence is empty");
  auto hyps = decode_segments(segs, one);
  if (hyps[0].empty()) throw std::runtime_error("write_attention_pictures: the decoder produced no hypothesis");
  const models::Hypothesis& best = hyps[0][0];  // the chosen hypothesis, as printed by translate
  const std::vector<int64_t>& src = segs[0].ids;
  std::vector<int64_t> tgt_in = {model_->options.bos_id};
  tgt_in.insert(tgt_in.end(), best.tokens.begin(), best.tokens.end());
  auto pieces = [&](const std::vector<int64_t>& ids) {
    std::vector<std::string> p;
    for (int64_t id : ids) p.push_back(tok_->piece(int(id)));
    return p;
  };
  // row t is the step that produces output token t: the hypothesis, then EOS (or the step after a cut)
  std::vector<std::string> src_tok = pieces(src), fed = pieces(tgt_in), produced = pieces(best.tokens);
  produced.push_back(best.finished ? tok_->piece(int(model_->options.eos_id)) : "(cut)");
  auto maps = model_->attention_maps(from_vector(src, {1, int64_t(src.size())}),
                                     from_vector(tgt_in, {1, int64_t(tgt_in.size())}));
  fs::create_directories(dir);
  std::vector<std::string> files;
  const std::string producing = "query: token produced";
  emit_pictures(maps.encoder_self, "encoder_self", "encoder self-attention", src_tok, src_tok, "query: source token",
                "key: source token", dir, files);
  emit_pictures(maps.decoder_self, "decoder_self", "decoder self-attention", produced, fed, producing,
                "key: target token fed in", dir, files);
  emit_pictures(maps.decoder_cross, "decoder_cross", "decoder cross-attention", produced, src_tok, producing,
                "key: source token", dir, files);
  return files;
}

}  // namespace attn::train
