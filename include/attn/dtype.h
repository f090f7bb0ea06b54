// attn/dtype.h — element types and devices.
//
//   attn::DType t = attn::kFloat32;
//   size_t bytes = attn::element_size(t);          // 4
//   attn::Device d = attn::kCPU;                    // later: attn::Device{attn::DeviceType::CUDA, 0}
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace attn {

enum class DType : uint8_t { Float32, Float64, Int32, Int64, Bool, UInt8, BFloat16 };

inline constexpr DType kFloat32 = DType::Float32;
inline constexpr DType kFloat64 = DType::Float64;
inline constexpr DType kInt32 = DType::Int32;
inline constexpr DType kInt64 = DType::Int64;
inline constexpr DType kBool = DType::Bool;
inline constexpr DType kUInt8 = DType::UInt8;
inline constexpr DType kBFloat16 = DType::BFloat16;

constexpr size_t element_size(DType t) {
  switch (t) {
    case DType::Float32: return 4;
    case DType::Float64: return 8;
    case DType::Int32: return 4;
    case DType::Int64: return 8;
    case DType::Bool: return 1;
    case DType::UInt8: return 1;
    case DType::BFloat16: return 2;
  }
  return 0;
}
constexpr bool is_floating(DType t) {
  return t == DType::Float32 || t == DType::Float64 || t == DType::BFloat16;
}
constexpr bool is_integral(DType t) { return !is_floating(t); }
const char* dtype_name(DType t);  // "float32", … (safetensors uses its own names: see io/safetensors.h)

// bfloat16 storage type: conversion rounds to nearest even; NaN stays NaN.
struct BFloat16 {
  uint16_t bits = 0;
  BFloat16() = default;
  explicit BFloat16(float f) {
    uint32_t u;
    std::memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) { bits = uint16_t((u >> 16) | 0x40); return; }
    u += 0x7fffu + ((u >> 16) & 1u);
    bits = uint16_t(u >> 16);
  }
  explicit operator float() const {
    uint32_t u = uint32_t(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

// C++ type <-> DType.
template <typename T> struct dtype_of;
template <> struct dtype_of<float> { static constexpr DType value = kFloat32; };
template <> struct dtype_of<double> { static constexpr DType value = kFloat64; };
template <> struct dtype_of<int32_t> { static constexpr DType value = kInt32; };
template <> struct dtype_of<int64_t> { static constexpr DType value = kInt64; };
template <> struct dtype_of<bool> { static constexpr DType value = kBool; };
template <> struct dtype_of<uint8_t> { static constexpr DType value = kUInt8; };
template <> struct dtype_of<BFloat16> { static constexpr DType value = kBFloat16; };

// Strict: a test-only device (tests/strict_backend.cc registers its backend): CPU kernels on memory
// that is unreadable outside backend calls, so a stray host access crashes a test.
enum class DeviceType : uint8_t { CPU, CUDA, Strict };
inline constexpr int kNumDeviceTypes = 3;
struct Device {
  DeviceType type = DeviceType::CPU;
  int index = 0;
  bool operator==(const Device&) const = default;
};
inline constexpr Device kCPU{DeviceType::CPU, 0};
inline constexpr Device kStrict{DeviceType::Strict, 0};
std::string device_name(Device d);  // "cpu", "cuda:0", "strict:0"

// Calls f(T{}) with T the C++ type of `t` (all dtypes).
template <typename F> decltype(auto) dispatch_dtype(DType t, F&& f) {
  switch (t) {
    case DType::Float32: return f(float{});
    case DType::Float64: return f(double{});
    case DType::Int32: return f(int32_t{});
    case DType::Int64: return f(int64_t{});
    case DType::Bool: return f(bool{});
    case DType::UInt8: return f(uint8_t{});
    case DType::BFloat16: return f(BFloat16{});
  }
  return f(float{});
}

}  // namespace attn
