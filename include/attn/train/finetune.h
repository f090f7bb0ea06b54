// attn/train/finetune.h — fine-tuning a pretrained BERT-family encoder (all-MiniLM-L6-v2 by default) as a
// text classifier on the Trainer: `attn finetune`. Modes: full fine-tuning, frozen encoder + linear head
// (feature extraction), LoRA adapters (attn/models/lora.h) + head; or the same architecture from random
// initialisation (--random-init) for the transfer-learning comparison.
//
//   attn::train::FinetuneOptions o{.model_dir = attn::models::default_minilm_dir(),
//                                  .train_path = "data/fortunes/train.tsv", .valid_path = "data/fortunes/valid.tsv",
//                                  .out_dir = "runs/ft-lora", .mode = attn::train::FinetuneMode::Lora};
//   attn::train::FinetuneResult r = attn::train::finetune_classifier(o);   // resumes if out_dir has a checkpoint
//
//   attn::train::BertClassifier clf(config, attn::train::HeadPooling::Mean, /*num_classes=*/5);
//   Tensor logits = clf.forward(ids, mask);   // ids, mask (N, S) int64 -> (N, 5)
//
// Data: train-text's files ("<label>\t<text>", scripts/prepare_fortunes.py); the text is tokenised by the
// model directory's tokenizer (or --tokenizer DIR). Classes in order of first appearance in the training
// file (out_dir/labels.txt). In LoRA mode out_dir/adapter/ holds the trained adapters in peft's format.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "attn/models/bert.h"

namespace attn::train {

enum class HeadPooling { Mean, Pooler };  // mean over the kept tokens (sentence-transformers'), or BERT's pooler
enum class FinetuneMode { Full, Frozen, Lora };
FinetuneMode finetune_mode_from_string(const std::string& name);  // "full", "frozen", "lora"

// BertModel -> pooled (N, H) -> Dropout -> Linear(H, C). Keys: bert.*, classifier.weight / bias.
class BertClassifier : public nn::Module {
 public:
  BertClassifier(const models::BertConfig& config, HeadPooling pooling, int64_t num_classes);
  Tensor forward(const Tensor& ids, const Tensor& attention_mask);  // (N, S) x 2 -> (N, C)

  HeadPooling pooling;
  std::shared_ptr<models::BertModel> bert;
  std::shared_ptr<nn::Dropout> dropout;
  std::shared_ptr<nn::Linear> classifier;
};

struct FinetuneOptions {
  std::string model_dir;       // Hugging Face directory (config.json + weights)
  std::string tokenizer_dir;   // empty: model_dir
  std::string train_path, valid_path, test_path;  // test_path empty: no test accuracy
  std::string out_dir = "runs/finetune";
  FinetuneMode mode = FinetuneMode::Full;
  bool random_init = false;    // keep the architecture, skip the pretrained weights
  HeadPooling pooling = HeadPooling::Mean;
  int64_t train_examples = 0;  // 0: all; else this many, drawn by a seeded shuffle
  int64_t valid_examples = 0;  // 0: all; else the first this many (faster evaluations)
  int64_t max_len = 128;       // tokens per example, [CLS] and [SEP] included
  int64_t batch_size = 32;
  double lr = 5e-5;            // AdamW, encoder (and LoRA) parameters
  double head_lr = 1e-3;       // the classifier
  double weight_decay = 0.01;  // not on biases and LayerNorm weights
  double dropout = 0.1;        // before the classifier
  double clip_grad_norm = 1.0;
  int64_t lora_r = 8;
  double lora_alpha = 16, lora_dropout = 0.1;
  std::string lora_targets = "query|value";  // LoraConfig::target_pattern: '|'-separated globs / suffixes
  int64_t max_epochs = 3, max_steps = 0;
  double time_budget_s = 0;
  int64_t eval_every = 0;      // 0: each epoch end
  uint64_t seed = 1;
  bool resume = true;
  int64_t log_every = 50;
  bool progress = true;
  bool handle_signals = true;
  int64_t stop_after_steps = -1;  // tests: return after this many steps, writing nothing
};

struct FinetuneResult {
  int64_t steps = 0, epochs_done = 0;
  double valid_accuracy = 0, valid_loss = 0, best_valid_accuracy = 0;
  double test_accuracy = -1, test_loss = -1;  // with the best weights; -1 when not measured
  int64_t parameters = 0, trainable_parameters = 0, num_classes = 0, train_examples = 0;
  double seconds = 0, train_seconds = 0;
  std::string checkpoint, best_checkpoint, adapter_dir;
  bool resumed = false;
  int signal = 0;
};

FinetuneResult finetune_classifier(const FinetuneOptions& o);

}  // namespace attn::train
