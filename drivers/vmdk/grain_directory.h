// SparseDirectory: a grain directory (VMDK's L1 table) held in memory in
// pages of kPageEntries entries, where a page whose entries are all 0 (no
// grain table) is not stored at all.
//
// Why: a hostile or merely huge sparse extent (2^40 sectors: 2^24 entries,
// a 64 MiB hole in the file) may have almost every entry 0. A flat array
// costs its full size in memory and page faults at every open; this costs
// a pointer per page (8 bytes per 4 KiB of directory) plus the pages that
// hold a table, so memory follows what the file holds, not what the
// header declares. Entries keep their on-disk width (uint32_t sector
// numbers for VMDK3/VMDK4, uint64_t for seSparse).
//
// A lookup is two dependent loads (page pointer, entry), the second of
// them the same page for neighbouring tables. next_nonzero() skips absent
// pages in one step, so walking a directory costs its page count plus its
// allocated pages' entries, never one step per empty entry.
//
// Not thread-safe; the owning extent uses it on its node's loop thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "drivers/vmdk/bytes.h"

namespace coblk::vmdk {

template <typename T>
class SparseDirectory {
 public:
  static constexpr uint32_t kPageShift = 10;
  static constexpr uint32_t kPageEntries = uint32_t{1} << kPageShift;

  SparseDirectory() = default;
  explicit SparseDirectory(uint32_t size) { resize(size); }

  // Sets the number of entries; new entries are 0, entries past the new
  // size are dropped.
  void resize(uint32_t size) {
    size_ = size;
    pages_.resize((uint64_t{size} + kPageEntries - 1) >> kPageShift);
    // Entries past size in the last page must read as 0 if it grows again.
    if (size % kPageEntries && pages_.back()) {
      T* p = pages_.back().get();
      std::fill(p + size % kPageEntries, p + kPageEntries, T{0});
    }
  }
  uint32_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // Entry i (i < size()).
  T operator[](uint32_t i) const {
    const T* page = pages_[i >> kPageShift].get();
    return page ? page[i & (kPageEntries - 1)] : T{0};
  }
  // Sets entry i (i < size()); stores a page only for a non-zero value.
  void set(uint32_t i, T value) {
    std::unique_ptr<T[]>& page = pages_[i >> kPageShift];
    if (!page) {
      if (value == 0) return;
      page = std::make_unique<T[]>(kPageEntries);  // zero-filled
    }
    page[i & (kPageEntries - 1)] = value;
  }

  // The first index >= i whose entry is non-zero, or size() if none.
  uint32_t next_nonzero(uint32_t i) const {
    while (i < size_) {
      const uint32_t page_index = i >> kPageShift;
      const T* page = pages_[page_index].get();
      const uint64_t page_end = std::min<uint64_t>(uint64_t{page_index + 1} << kPageShift, size_);
      if (page) {
        for (; i < page_end; ++i)
          if (page[i & (kPageEntries - 1)] != 0) return i;
      }
      i = static_cast<uint32_t>(page_end);
    }
    return size_;
  }

  // Stores entries [first, first + bytes.size() / sizeof(T)) from their
  // on-disk little-endian encoding; all-zero pages stay absent. The range
  // must lie inside size().
  void load_le(uint32_t first, std::span<const uint8_t> bytes) {
    const uint64_t count = bytes.size() / sizeof(T);
    uint64_t done = 0;
    while (done < count) {
      const uint64_t i = first + done;
      const uint64_t in_page = i & (kPageEntries - 1);
      const uint64_t n = std::min<uint64_t>(kPageEntries - in_page, count - done);
      std::span<const uint8_t> src = bytes.subspan(done * sizeof(T), n * sizeof(T));
      std::unique_ptr<T[]>& page = pages_[i >> kPageShift];
      if (page || !AllZero(src)) {
        if (!page) page = std::make_unique<T[]>(kPageEntries);
        for (uint64_t k = 0; k < n; ++k) page[in_page + k] = Load(src, k * sizeof(T));
      }
      done += n;
    }
  }

  // Pages held in memory (for tests and memory accounting).
  size_t stored_pages() const {
    size_t n = 0;
    for (const auto& p : pages_) n += p != nullptr;
    return n;
  }

 private:
  static bool AllZero(std::span<const uint8_t> b) {
    // Compare in 8-byte words: a directory is mostly zeros.
    size_t k = 0;
    for (; k + 8 <= b.size(); k += 8) {
      uint64_t w;
      std::memcpy(&w, b.data() + k, 8);
      if (w) return false;
    }
    for (; k < b.size(); ++k)
      if (b[k]) return false;
    return true;
  }
  static T Load(std::span<const uint8_t> b, size_t at) {
    if constexpr (sizeof(T) == 8)
      return LoadLe64(b, at);
    else
      return LoadLe32(b, at);
  }

  std::vector<std::unique_ptr<T[]>> pages_;
  uint32_t size_ = 0;
};

}  // namespace coblk::vmdk
