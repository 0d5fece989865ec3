// Little/big-endian field access for on-disk VMDK structures.
//
// Decoders never reinterpret raw bytes as structs: every field is assembled
// byte by byte from a span whose size the caller has already checked.  The
// accessors still assert the bound so a decoder bug fails loudly in tests.
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <span>

namespace coblk::vmdk {

inline uint64_t LoadLe(std::span<const uint8_t> b, size_t off, size_t width) {
  assert(off <= b.size() && width <= b.size() - off);
  uint64_t v = 0;
  for (size_t i = 0; i < width; ++i) v |= uint64_t{b[off + i]} << (8 * i);
  return v;
}
inline uint16_t LoadLe16(std::span<const uint8_t> b, size_t off) {
  return static_cast<uint16_t>(LoadLe(b, off, 2));
}
inline uint32_t LoadLe32(std::span<const uint8_t> b, size_t off) {
  return static_cast<uint32_t>(LoadLe(b, off, 4));
}
inline uint64_t LoadLe64(std::span<const uint8_t> b, size_t off) {
  return LoadLe(b, off, 8);
}
inline uint32_t LoadBe32(std::span<const uint8_t> b, size_t off) {
  assert(off <= b.size() && 4 <= b.size() - off);
  return (uint32_t{b[off]} << 24) | (uint32_t{b[off + 1]} << 16) |
         (uint32_t{b[off + 2]} << 8) | uint32_t{b[off + 3]};
}

inline void StoreLe(std::span<uint8_t> b, size_t off, size_t width,
                    uint64_t v) {
  assert(off <= b.size() && width <= b.size() - off);
  for (size_t i = 0; i < width; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void StoreLe16(std::span<uint8_t> b, size_t off, uint16_t v) { StoreLe(b, off, 2, v); }
inline void StoreLe32(std::span<uint8_t> b, size_t off, uint32_t v) { StoreLe(b, off, 4, v); }
inline void StoreLe64(std::span<uint8_t> b, size_t off, uint64_t v) { StoreLe(b, off, 8, v); }
inline void StoreBe32(std::span<uint8_t> b, size_t off, uint32_t v) {
  assert(off <= b.size() && 4 <= b.size() - off);
  b[off] = static_cast<uint8_t>(v >> 24);
  b[off + 1] = static_cast<uint8_t>(v >> 16);
  b[off + 2] = static_cast<uint8_t>(v >> 8);
  b[off + 3] = static_cast<uint8_t>(v);
}

// Overflow-checked arithmetic on hostile values: false on overflow.
inline bool CheckedAdd(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_add_overflow(a, b, out);
}
inline bool CheckedMul(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}

}  // namespace coblk::vmdk
