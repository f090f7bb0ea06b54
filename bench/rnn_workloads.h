// bench/rnn_workloads.h — attn_bench's recurrent and text-CNN workloads (issue 17); their PyTorch twins
// are in bench/torch_rnn_workloads.py.
//
//   attn::bench::Job j = attn::bench::char_lm_train_step(attn::train::RecurrentCell::LSTM);
//
// char_lm_train_step: `attn train-lm`'s model, Embedding(96 -> 128) + 2-layer LSTM / GRU (hidden 512,
//   batch_first) + Linear(512 -> 96); one step on a batch of 32 x 64 random ids from zero states:
//   forward, cross-entropy, backward, Adam; tokens/s (2048 per step). autocast (the *_bf16 rows): forward
//   and loss under attn::Autocast, as PyTorch's peer under torch.autocast("cpu", dtype=torch.bfloat16).
// lstm_sample: `attn generate` on that LSTM model (random weights), batch 1: a one-character prompt,
//   then 128 characters sampled one at a time (temperature 1, no top-k / top-p) with the state carried.
// textcnn_train_step: `attn train-text --model cnn`'s TextCNN (Embedding(10000 -> 128), Conv1d widths
//   3, 4, 5 with 100 filters each, max over time, dropout 0.5, Linear(300 -> 4)), batch 32 x 200 ids,
//   Adam; examples/s.
// bi{lstm,gru}_{text,lm}_{train,infer}: one bidirectional 1-layer LSTM / GRU layer (issue 17's concurrent
//   directions, A/B with ATTN_RNN_CONCURRENT_DIRECTIONS=0 / 1). text: `attn train-text`'s recurrent shape,
//   batch 32 packed unsorted with lengths 100..200 (fixed seed), input 128, hidden 256; lm: dense
//   batch_first 32 x 64, input 128, hidden 512. train: forward and backward of sum(output * r) with
//   the input requiring grad; infer: the forward without autograd. tokens/s.
// The LM rows report the work per token (mflop_per_token: forward + backward = 3 x the forward's
// multiply-adds x 2), and the FMA ceiling as a probe, so run.py's note gives effective GFLOP/s.
#pragma once
#include <memory>

#include "attn/attn.h"
#include "attn/train/language_model.h"
#include "attn/train/text_classifier.h"
#include "bench_job.h"
#include "ceiling.h"

namespace attn::bench {

inline constexpr int64_t kCharVocab = 96, kCharEmbed = 128, kCharHidden = 512, kCharLayers = 2;

inline std::shared_ptr<train::CharLM> bench_char_lm(train::RecurrentCell cell) {
  return std::make_shared<train::CharLM>(train::CharLMOptions{.vocab_size = kCharVocab, .embedding_dim = kCharEmbed,
                                                              .hidden_size = kCharHidden, .num_layers = kCharLayers,
                                                              .cell = cell});
}

// Multiply-adds x 2 per token of the char LM's forward (layers and decoder), times 3 for fwd + bwd.
inline double char_lm_train_mflop_per_token(train::RecurrentCell cell) {
  const double gates = cell == train::RecurrentCell::LSTM ? 4 : cell == train::RecurrentCell::GRU ? 3 : 1;
  const double layer0 = gates * kCharHidden * (kCharEmbed + kCharHidden);
  const double upper = gates * kCharHidden * (2.0 * kCharHidden) * double(kCharLayers - 1);
  return 3 * 2 * (layer0 + upper + double(kCharHidden) * kCharVocab) / 1e6;
}

inline Job char_lm_train_step(train::RecurrentCell cell, bool autocast = false) {
  constexpr int64_t kBatch = 32, kSteps = 64;
  auto model = bench_char_lm(cell);
  model->train();
  Tensor ids = randint(0, kCharVocab, {kBatch, kSteps});
  Tensor targets = randint(0, kCharVocab, {kBatch * kSteps});
  auto opt = std::make_shared<optim::Adam>(model->parameters(), optim::AdamOptions{.lr = 2e-3});
  return {.iteration =
              [=] {
                Tensor loss;
                {
                  Autocast ac(kBFloat16, autocast);
                  Tensor logits = model->forward(ids);  // (B, T, V)
                  loss = cross_entropy(logits.flatten(0, 1), targets);
                }
                opt->zero_grad();
                loss.backward();
                opt->step();
              },
          .units_per_iteration = double(kBatch * kSteps),
          .unit = "tokens/s",
          .options = {.warmup = 2, .repeats = 5},
          .probe = [] { return fma_peak_gflops(); },
          .extra = {{"parameters", model->num_parameters()},
                    {"mflop_per_token", char_lm_train_mflop_per_token(cell)}}};
}

inline Job lstm_sample() {
  constexpr int64_t kLength = 128;
  std::string chars;
  for (char ch = ' '; ch <= '~'; ++ch) chars += ch;  // 95 printable characters + <unk> = 96
  auto session = std::make_shared<train::LMSession>(bench_char_lm(train::RecurrentCell::LSTM),
                                                    text::Vocab::build(chars, {.specials = {"<unk>"}}));
  if (session->vocab().size() != kCharVocab)
    throw std::runtime_error("lstm_sample: vocabulary of " + std::to_string(session->vocab().size()) + " characters");
  auto seed = std::make_shared<uint64_t>(0);
  auto produced = std::make_shared<size_t>(0);
  return {.iteration =
              [=] {
                std::string text = session->generate("T", {.length = kLength, .seed = ++*seed});
                *produced = text.size();
              },
          .units_per_iteration = double(kLength),
          .unit = "tokens/s",
          .options = {.warmup = 2, .repeats = 5},
          .check =
              [=] {
                if (*produced != size_t(kLength + 1))
                  throw std::runtime_error("lstm_sample: " + std::to_string(*produced) + " characters generated");
              },
          .extra = {{"parameters", session->model().num_parameters()}}};
}

inline Job textcnn_train_step() {
  constexpr int64_t kBatch = 32, kLen = 200, kWords = 10000, kClasses = 4;
  auto model = std::make_shared<train::TextCNN>(train::TextCNNOptions{.vocab_size = kWords, .num_classes = kClasses});
  model->train();
  Tensor ids = randint(1, kWords, {kBatch, kLen});
  Tensor labels = randint(0, kClasses, {kBatch});
  auto opt = std::make_shared<optim::Adam>(model->parameters(), optim::AdamOptions{.lr = 1e-3});
  return {.iteration =
              [=] {
                Tensor loss = cross_entropy(model->forward(ids), labels);
                opt->zero_grad();
                loss.backward();
                opt->step();
              },
          .units_per_iteration = double(kBatch),
          .unit = "examples/s",
          .options = {.warmup = 2, .repeats = 5},
          .extra = {{"parameters", model->num_parameters()}}};
}

inline Job birnn_step(train::RecurrentCell cell, bool text, bool train) {
  const int64_t B = 32, T = text ? 200 : 64, I = 128, H = text ? 256 : 512;
  const nn::RNNOptions o{.input_size = I, .hidden_size = H, .batch_first = true, .bidirectional = true};
  std::shared_ptr<nn::RNNBase> m;
  if (cell == train::RecurrentCell::LSTM) m = std::make_shared<nn::LSTM>(o);
  else m = std::make_shared<nn::GRU>(o);
  manual_seed(17);
  std::vector<int64_t> lengths(static_cast<size_t>(B), T);
  if (text)
    for (int64_t& n : lengths) n = randint(100, T + 1, {1}).item<int64_t>();
  int64_t tokens = 0;
  for (int64_t n : lengths) tokens += n;
  Tensor x = randn({B, T, I}).requires_grad_(train);
  Tensor r = randn({text ? tokens : B * T, 2 * H});
  auto forward = [=] {
    if (text) {
      nn::PackedSequence p = nn::utils::pack_padded_sequence(x, lengths, {.batch_first = true, .enforce_sorted = false});
      return cell == train::RecurrentCell::LSTM ? std::static_pointer_cast<nn::LSTM>(m)->forward(p, {}).output.data
                                                : std::static_pointer_cast<nn::GRU>(m)->forward(p, Tensor()).output.data;
    }
    return cell == train::RecurrentCell::LSTM ? std::static_pointer_cast<nn::LSTM>(m)->forward(x, {}).output
                                              : std::static_pointer_cast<nn::GRU>(m)->forward(x, Tensor()).output;
  };
  return {.iteration =
              [=] {
                if (!train) {
                  NoGradGuard ng;
                  forward();
                  return;
                }
                m->zero_grad();
                Tensor loss = sum(mul(forward().reshape({-1, 2 * H}), r));
                loss.backward();
              },
          .units_per_iteration = double(tokens),
          .unit = "tokens/s",
          .options = {.warmup = 2, .repeats = 5}};
}

}  // namespace attn::bench
