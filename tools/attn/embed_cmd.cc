// tools/attn/embed_cmd.cc — sentence embeddings with a sentence-transformers directory (default: the
// venv's all-MiniLM-L6-v2): `attn embed` and `attn similarity`.
//
//   attn embed < sentences.txt > vectors.jsonl          # one sentence per line -> one JSON array per line
//   attn embed --input sentences.txt --output vectors.npy   # float32 (N, D) .npy
//   attn similarity --query "a man plays guitar" --file sentences.txt --top-k 3   # score<TAB>line<TAB>text
//   attn embed --model ~/models/paraphrase-MiniLM-L3-v2 ...   # any sentence-transformers BERT directory
#include <omp.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <numeric>
#include <nlohmann/json.hpp>

#include "attn/autograd.h"
#include "attn/io/safetensors.h"
#include "attn/models/hf_model_dir.h"
#include "attn/models/sentence_transformer.h"
#include "attn/ops.h"
#include "attn/text/tokenizer.h"
#include "commands.h"

namespace attn::cli {
namespace {

struct Embedder {
  models::SentenceTransformer st;
  std::unique_ptr<text::Tokenizer> tokenizer;
  int64_t batch_size = 32;

  explicit Embedder(const std::string& model_dir, int64_t batch)
      : st(models::SentenceTransformer::load(model_dir.empty() ? models::default_minilm_dir() : model_dir)),
        tokenizer(text::load_tokenizer_dir(st.dir)), batch_size(batch) {
    if (batch_size <= 0) throw std::invalid_argument("--batch-size must be positive");
  }
  // (N, D) float32, rows in the order of `sentences`
  Tensor embed(const std::vector<std::string>& sentences) {
    NoGradGuard ng;
    std::vector<Tensor> parts;
    for (size_t b = 0; b < sentences.size(); b += size_t(batch_size)) {
      std::vector<std::string> chunk(sentences.begin() + long(b),
                                     sentences.begin() + long(std::min(sentences.size(), b + size_t(batch_size))));
      text::BatchEncoding e = tokenizer->encode_batch(chunk, {.max_length = st.max_seq_length});
      Tensor ids = from_vector(e.ids, {e.batch, e.length}), mask = from_vector(e.attention_mask, {e.batch, e.length});
      parts.push_back(st.encode(ids, mask));
    }
    if (parts.empty()) return zeros({0, st.model->config.hidden_size});
    return cat(parts, 0);
  }
};

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream file;
  if (path != "-") {
    file.open(path, std::ios::binary);
    if (!file) throw std::runtime_error(path + ": cannot open");
  }
  std::istream& in = path == "-" ? std::cin : file;
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

// NumPy's .npy v1.0: magic, header length, a Python dict literal padded to 64 bytes, then the data.
void write_npy(const std::string& path, const Tensor& x) {
  const std::vector<float> v = x.contiguous().to_vector<float>();
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(x.size(0)) + ", " +
                       std::to_string(x.size(1)) + "), }";
  header.append(63 - (10 + header.size()) % 64, ' ');
  header += '\n';
  std::string bytes = std::string("\x93NUMPY\x01\x00", 8);
  bytes += char(header.size() & 0xff);
  bytes += char(header.size() >> 8);
  bytes += header;
  bytes.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
  io::write_file_atomic(path, bytes);
}

void write_json_lines(std::ostream& out, const Tensor& x) {
  const int64_t N = x.size(0), D = x.size(1);
  const std::vector<float> v = x.contiguous().to_vector<float>();
  char buf[32];
  for (int64_t n = 0; n < N; ++n) {
    std::string line = "[";
    for (int64_t d = 0; d < D; ++d) {
      std::snprintf(buf, sizeof buf, "%.9g", double(v[size_t(n * D + d)]));
      if (d) line += ',';
      line.append(buf);
    }
    out << line << "]\n";
  }
}

struct EmbedCli {
  std::string model, input = "-", output = "-", query, file;
  int64_t batch_size = 32, top_k = 5;
  int threads = 0;
};

void add_model_options(CLI::App* cmd, EmbedCli& c) {
  cmd->add_option("--model", c.model, "sentence-transformers directory (default: all-MiniLM-L6-v2 from the venv)");
  cmd->add_option("--batch-size", c.batch_size, "sentences per forward pass")->capture_default_str();
  cmd->add_option("--threads", c.threads, "OpenMP threads (0: OMP_NUM_THREADS or all cores)")->capture_default_str();
}

}  // namespace

void add_embed_commands(CLI::App& app) {
  auto c = std::make_shared<EmbedCli>();
  CLI::App* embed = app.add_subcommand("embed", "sentence embeddings: one sentence per input line");
  add_model_options(embed, *c);
  embed->add_option("--input", c->input, "text file, one sentence per line ('-': stdin)")->capture_default_str();
  embed->add_option("--output", c->output, "'-' (stdout): one JSON array per line; a path ending in .npy: float32 (N, D)")
      ->capture_default_str();
  embed->callback([c] {
    if (c->threads > 0) omp_set_num_threads(c->threads);
    Embedder e(c->model, c->batch_size);
    const Tensor x = e.embed(read_lines(c->input));
    const std::string& out = c->output;
    if (out.size() > 4 && out.compare(out.size() - 4, 4, ".npy") == 0) {
      write_npy(out, x);
    } else if (out == "-") {
      write_json_lines(std::cout, x);
    } else {
      std::ofstream f(out, std::ios::binary);
      if (!f) throw std::runtime_error(out + ": cannot write");
      write_json_lines(f, x);
    }
  });

  CLI::App* sim = app.add_subcommand("similarity", "the sentences of a file closest to a query (cosine)");
  add_model_options(sim, *c);
  sim->add_option("--query", c->query, "the query sentence")->required();
  sim->add_option("--file", c->file, "text file, one sentence per line")->required();
  sim->add_option("--top-k", c->top_k, "how many to print")->capture_default_str();
  sim->callback([c] {
    if (c->threads > 0) omp_set_num_threads(c->threads);
    if (c->top_k <= 0) throw std::invalid_argument("--top-k must be positive");
    Embedder e(c->model, c->batch_size);
    const std::vector<std::string> lines = read_lines(c->file);
    auto unit = [](const Tensor& x) { return div(x, clamp(sqrt(sum(mul(x, x), {1}, true)), 1e-12, std::nullopt)); };
    const Tensor q = unit(e.embed({c->query}));                                      // (1, D)
    const Tensor s = unit(e.embed(lines));                                           // (N, D)
    const std::vector<float> scores = matmul(s, q.t()).contiguous().to_vector<float>();  // (N, 1)
    std::vector<size_t> order(scores.size());
    std::iota(order.begin(), order.end(), size_t(0));
    const size_t k = std::min(order.size(), size_t(c->top_k));
    std::partial_sort(order.begin(), order.begin() + long(k), order.end(),
                      [&](size_t a, size_t b) { return scores[a] > scores[b]; });
    char buf[32];
    for (size_t i = 0; i < k; ++i) {
      std::snprintf(buf, sizeof buf, "%.4f", double(scores[order[i]]));
      std::cout << buf << "\t" << order[i] + 1 << "\t" << lines[order[i]] << "\n";
    }
  });
}

}  // namespace attn::cli
