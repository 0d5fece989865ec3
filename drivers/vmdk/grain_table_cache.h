// GrainTableCache: the per-extent cache of grain tables (VMDK's L2 tables).
//
// * Lookup is O(1): a hash index (open addressing, linear probing) maps a
//   grain-directory index to its slot, so a hit is a multiply, one or two
//   probes and a slot load (QEMU scans 16 slots under a global lock). The
//   index holds only the cached tables: its memory follows the cache, not
//   the directory (a 2^24-entry directory used to cost 64 MiB here).
// * A miss loads the table once. Requests that want a table while it is
//   being loaded wait for that load instead of issuing their own.
// * Replacement is CLOCK (second chance): a hit sets the slot's referenced
//   bit; the eviction hand clears bits until it finds an unreferenced slot
//   that is neither loading nor pinned. Close to LRU, but a hit writes one
//   byte instead of relinking a list.
// * Pinned slots (Pin) are never evicted; writers pin the table they update
//   across the I/O so the cached copy cannot disappear under them.
// Everything runs on the node's loop thread; no locks are needed.
// Progress: a get() that finds every slot loading or pinned waits on
// slot_waiters_; every end of a load and every last unpin wakes all such
// waiters, and each re-checks from the start, so a cache of one table
// makes progress at any queue depth (loads and pins are short: a load is
// one read, a pin is held across one table write).
// Returned table pointers are valid until the caller next suspends.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "block/block_node.h"
#include "coroutine/co_queue.h"
#include "coroutine/task.h"
#include "util/status.h"

namespace coblk::vmdk {

class GrainTableCache {
 public:
  // directory_entries: number of grain tables the extent can have (only
  // bounds the slot count: the index is sized by what is cached);
  // table_bytes: size of one table; capacity: tables kept in memory (>= 1).
  GrainTableCache(uint32_t directory_entries, uint32_t table_bytes, uint32_t capacity);

  // A hit: the table's bytes, or nullptr if not cached (or still loading).
  // Valid until the caller next suspends (or while pinned).
  uint8_t* lookup(uint32_t index) {
    int32_t s = slot_of_.find(index);
    if (s < 0) return nullptr;
    Slot& slot = slots_[static_cast<size_t>(s)];
    if (slot.loading) return nullptr;
    slot.referenced = true;
    return slot.data.get();
  }

  // The table for directory entry `index`, stored at file_offset in file,
  // loading it if needed. Counts hits and misses.
  Task<Result<uint8_t*>> get(uint32_t index, BlockNode& file, uint64_t file_offset);

  // Puts a zero-filled table for `index` in the cache without reading it
  // (a table that exists only in memory). nullptr if no slot is free.
  uint8_t* install(uint32_t index);

  // Keeps a cached table from being evicted while alive.
  class Pin {
   public:
    Pin() = default;
    Pin(GrainTableCache* c, uint32_t index);
    Pin(Pin&& o) noexcept : cache_(o.cache_), slot_(o.slot_) { o.cache_ = nullptr; }
    Pin& operator=(Pin&&) = delete;
    ~Pin();

   private:
    GrainTableCache* cache_ = nullptr;
    int32_t slot_ = -1;
  };

  uint32_t capacity() const { return static_cast<uint32_t>(slots_.size()); }
  // Tables in the cache (loaded, loading or installed).
  uint32_t cached() const { return slot_of_.size(); }
  uint32_t table_bytes() const { return table_bytes_; }
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }
  uint64_t loads() const { return loads_; }

 private:
  struct Slot {
    std::unique_ptr<uint8_t[]> data;
    int64_t index = -1;      // directory index held, -1 = empty
    uint32_t pins = 0;
    bool loading = false;
    bool referenced = false;
    CoQueue load_waiters;
  };

  // Picks a slot to reuse, or -1 if every slot is loading or pinned.
  int32_t pick_victim();
  // A slot stopped loading or lost its last pin: may be reusable now.
  void release_slot();

  // Directory index -> slot, for the slots that hold a table. Open
  // addressing with linear probing and backward-shift deletion (no
  // tombstones), at most half full: it grows by doubling as tables are
  // cached, so its size follows the cache's occupancy.
  class SlotIndex {
   public:
    SlotIndex() : table_(kMinBuckets), shift_(64 - kMinBits) {}
    // The slot of `key`, or -1.
    int32_t find(uint32_t key) const {
      const size_t mask = table_.size() - 1;
      for (size_t i = home(key);; i = (i + 1) & mask) {
        const Bucket& b = table_[i];
        if (b.key == key) return b.slot;
        if (b.key == kEmpty) return -1;
      }
    }
    // Maps `key` (not present) to `slot`.
    void insert(uint32_t key, int32_t slot);
    // Unmaps `key` if present.
    void erase(uint32_t key);
    uint32_t size() const { return count_; }

   private:
    // Directory indices are < 2^32 - 1 (l1_size is a uint32_t count).
    static constexpr uint32_t kEmpty = UINT32_MAX;
    static constexpr unsigned kMinBits = 4;
    static constexpr size_t kMinBuckets = size_t{1} << kMinBits;
    struct Bucket {
      uint32_t key = kEmpty;
      int32_t slot = -1;
    };
    // Fibonacci hashing: neighbouring directory indices spread out.
    size_t home(uint32_t key) const {
      return static_cast<size_t>((uint64_t{key} * 0x9E3779B97F4A7C15ULL) >> shift_);
    }
    void grow();

    std::vector<Bucket> table_;
    unsigned shift_;  // 64 - log2(table_.size())
    uint32_t count_ = 0;
  };

  SlotIndex slot_of_;             // directory index -> slot, for cached tables
  std::vector<Slot> slots_;
  uint32_t table_bytes_;
  uint32_t hand_ = 0;
  CoQueue slot_waiters_;          // requests waiting for any free slot
  uint64_t hits_ = 0, misses_ = 0, loads_ = 0;
};

}  // namespace coblk::vmdk
