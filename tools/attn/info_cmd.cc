// tools/attn/info_cmd.cc — `attn version` and `attn info` (CPU features, threads, library versions).
#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <zlib.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "attn/data/dataset.h"
#include "attn/nn/int8_linear.h"
#include "backend/cpu/dispatch.h"
#include "backend/cpu/gemm_bf16.h"
#include "backend/cpu/omp_env.h"
#include "nn/rnn_onednn.h"
#include "commands.h"

#ifndef ATTN_VERSION
#error "ATTN_VERSION must be defined by the build (tools/attn/CMakeLists.txt)"
#endif

namespace attn::cli {
namespace {

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(" \t", colon + 1));
    }
  return "unknown";
}

std::string cpu_features() {
  __builtin_cpu_init();
  std::string s;
  auto add = [&](bool on, const char* name) {
    if (on) s += (s.empty() ? "" : " ") + std::string(name);
  };
  add(__builtin_cpu_supports("sse4.2"), "sse4.2");
  add(__builtin_cpu_supports("avx"), "avx");
  add(__builtin_cpu_supports("avx2"), "avx2");
  add(__builtin_cpu_supports("fma"), "fma");
  add(__builtin_cpu_supports("avx512f"), "avx512f");
  add(__builtin_cpu_supports("avx512bw"), "avx512bw");
  add(__builtin_cpu_supports("avx512vl"), "avx512vl");
  add(__builtin_cpu_supports("avx512dq"), "avx512dq");
  add(__builtin_cpu_supports("avx512vnni"), "avx512vnni");
  add(__builtin_cpu_supports("avx512bf16"), "avx512bf16");
  return s;
}

// How idle OpenMP threads wait: attn's default (docs/threading.md) or the user's variables.
std::string omp_wait() {
  if (const char* d = cpu::omp_wait_default_in_effect()) return std::string(d) + " (attn default)";
  std::string s;
  for (const char* k : {"OMP_WAIT_POLICY", "GOMP_SPINCOUNT"})
    if (const char* v = std::getenv(k)) s += (s.empty() ? "" : " ") + std::string(k) + "=" + v;
  return s.empty() ? "OpenMP runtime default" : s + " (user)";
}

}  // namespace

void add_info_commands(CLI::App& app) {
  app.add_subcommand("version", "print the version")->callback([] { std::cout << "attn " ATTN_VERSION "\n"; });

  auto json_out = std::make_shared<bool>(false);
  CLI::App* info = app.add_subcommand("info", "CPU features, threads and library versions");
  info->add_flag("--json", *json_out, "print one JSON object instead of text");
  info->callback([json_out] {
    const dnnl_version_t* dv = dnnl_version();
    std::string dnnl = std::to_string(dv->major) + "." + std::to_string(dv->minor) + "." + std::to_string(dv->patch);
    std::string nlohmann = std::to_string(NLOHMANN_JSON_VERSION_MAJOR) + "." +
                           std::to_string(NLOHMANN_JSON_VERSION_MINOR) + "." + std::to_string(NLOHMANN_JSON_VERSION_PATCH);
    nlohmann::ordered_json j = {
        {"attn", ATTN_VERSION},
        {"cpu", cpu_model()},
        {"cpu_features", cpu_features()},
        {"kernel_isa", cpu::isa_name(cpu::active_isa())},
        // bf16 GEMM path (ATTN_BF16_ISA=amx|avx512_bf16|convert caps it) and oneDNN's kernel behind it
        {"bf16_gemm", std::string(cpu::bf16_path_name(cpu::bf16_path())) + " (" + cpu::bf16_gemm_impl() + ")"},
        // int8 products: full 8-bit weights with VNNI, 7-bit without (nn/int8_linear.h says why)
        {"int8_gemm", nn::int8_uses_seven_bit_weights() ? "7-bit weights (no VNNI: int16 pairs would saturate)"
                                                        : "8-bit weights (VNNI)"},
        // recurrent layers under autocast: oneDNN's bf16 primitives or the layers' own loop (nn/rnn_onednn.h)
        {"rnn_bf16", nn::detail::onednn_rnn_bf16() ? "oneDNN bf16 primitives" : "the layers' loop (bf16 GEMMs)"},
        {"hardware_threads", std::thread::hardware_concurrency()},
        {"omp_max_threads", omp_get_max_threads()},
        {"omp_wait", omp_wait()},
        {"openmp", _OPENMP},
        {"compiler", std::string("gcc ") + __VERSION__},
        {"cxx_standard", __cplusplus},
        {"onednn", dnnl},
        {"zlib", zlibVersion()},
        {"nlohmann_json", nlohmann},
        {"cli11", CLI11_VERSION},
        {"fashion_mnist", data::FashionMNIST::available() ? data::FashionMNISTOptions{}.root : "not found"},
    };
    if (*json_out) {
      std::cout << j.dump() << "\n";
      return;
    }
    for (auto& [k, v] : j.items()) std::cout << k << std::string(k.size() < 18 ? 18 - k.size() : 1, ' ')
                                              << (v.is_string() ? v.get<std::string>() : v.dump()) << "\n";
  });
}

}  // namespace attn::cli
