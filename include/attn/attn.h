// attn/attn.h — the whole public API in one include.
//
//   #include <attn/attn.h>
//   using namespace attn;
//   auto model = std::make_shared<nn::Sequential>(nn::Linear(784, 128), nn::ReLU(), nn::Linear(128, 10));
//   optim::AdamW opt(model->parameters(), {.lr = 1e-3});
//   Tensor loss = cross_entropy((*model)(x), y);
//   opt.zero_grad(); loss.backward(); opt.step();
#pragma once
#include "attn/autocast.h"
#include "attn/autograd.h"
#include "attn/dtype.h"
#include "attn/ops.h"
#include "attn/random.h"
#include "attn/tensor.h"

#include "attn/data/dataloader.h"
#include "attn/data/dataset.h"
#include "attn/data/idx.h"
#include "attn/data/parallel_text.h"
#include "attn/eval/bleu.h"
#include "attn/io/checkpoint.h"
#include "attn/io/heatmap.h"
#include "attn/io/metrics.h"
#include "attn/io/progress.h"
#include "attn/io/safetensors.h"
#include "attn/models/decoding.h"
#include "attn/models/translator.h"
#include "attn/nn/nn.h"
#include "attn/optim/optim.h"
#include "attn/text/sentencepiece.h"
#include "attn/train/classifier.h"
#include "attn/train/translation.h"
