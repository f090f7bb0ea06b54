// attn/nn/nn.h — all of attn::nn: Module, containers, layers, recurrent layers, transformer, init, gradient clipping.
//
//   #include <attn/nn/nn.h>
//   namespace nn = attn::nn;
//   auto model = std::make_shared<nn::Sequential>(nn::Linear(784, 128), nn::ReLU(), nn::Linear(128, 10));
#pragma once
#include "attn/nn/activation.h"
#include "attn/nn/conv.h"
#include "attn/nn/embedding.h"
#include "attn/nn/init.h"
#include "attn/nn/linear.h"
#include "attn/nn/module.h"
#include "attn/nn/normalization.h"
#include "attn/nn/pooling.h"
#include "attn/nn/rnn.h"
#include "attn/nn/transformer.h"
#include "attn/nn/utils.h"
