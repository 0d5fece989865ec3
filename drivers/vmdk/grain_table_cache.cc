#include "drivers/vmdk/grain_table_cache.h"

#include <algorithm>

namespace coblk::vmdk {

GrainTableCache::GrainTableCache(uint32_t directory_entries, uint32_t table_bytes,
                                 uint32_t capacity)
    : // Never more slots than tables: a small image needs no big cache.
      slots_(std::max<uint32_t>(1, std::min(capacity, std::max<uint32_t>(1, directory_entries)))),
      table_bytes_(table_bytes) {}

void GrainTableCache::SlotIndex::insert(uint32_t key, int32_t slot) {
  if (2 * (uint64_t{count_} + 1) > table_.size()) grow();
  const size_t mask = table_.size() - 1;
  size_t i = home(key);
  while (table_[i].key != kEmpty) i = (i + 1) & mask;
  table_[i] = {key, slot};
  ++count_;
}

void GrainTableCache::SlotIndex::erase(uint32_t key) {
  const size_t mask = table_.size() - 1;
  size_t i = home(key);
  for (;; i = (i + 1) & mask) {
    if (table_[i].key == key) break;
    if (table_[i].key == kEmpty) return;
  }
  // Backward shift: move later members of the probe run into the hole
  // unless their home lies cyclically in (hole, j], where they must stay.
  for (size_t j = i;;) {
    j = (j + 1) & mask;
    if (table_[j].key == kEmpty) break;
    const size_t h = home(table_[j].key);
    const bool stays = i <= j ? (i < h && h <= j) : (i < h || h <= j);
    if (stays) continue;
    table_[i] = table_[j];
    i = j;
  }
  table_[i] = Bucket{};
  --count_;
}

void GrainTableCache::SlotIndex::grow() {
  std::vector<Bucket> old = std::move(table_);
  table_.assign(old.size() * 2, Bucket{});
  --shift_;
  count_ = 0;
  for (const Bucket& b : old)
    if (b.key != kEmpty) insert(b.key, b.slot);
}

int32_t GrainTableCache::pick_victim() {
  const uint32_t n = capacity();
  // Two sweeps: the first clears referenced bits, the second must find one
  // unless every slot is loading or pinned.
  for (uint32_t step = 0; step < 2 * n; ++step) {
    uint32_t i = hand_;
    hand_ = (hand_ + 1) % n;
    Slot& s = slots_[i];
    if (s.loading || s.pins > 0) continue;
    if (s.referenced) {
      s.referenced = false;
      continue;
    }
    return static_cast<int32_t>(i);
  }
  return -1;
}

// Wakes every request waiting for a slot. notify_one() would lose the
// wake-up: the woken request may find its table cached by then (another
// request loaded it) and return without taking the slot, while the others
// sleep on with a free slot. Waking them all costs one re-check each; the
// woken requests run later on this loop, so the caller still holds the
// slot it just loaded until it suspends.
void GrainTableCache::release_slot() { slot_waiters_.notify_all(); }

Task<Result<uint8_t*>> GrainTableCache::get(uint32_t index, BlockNode& file,
                                            uint64_t file_offset) {
  for (;;) {
    int32_t s = slot_of_.find(index);
    if (s >= 0) {
      Slot& slot = slots_[static_cast<size_t>(s)];
      if (!slot.loading) {
        ++hits_;
        slot.referenced = true;
        co_return slot.data.get();
      }
      // Someone is loading this table: wait for that load, then re-check
      // (it may have failed, or been evicted again meanwhile).
      co_await slot.load_waiters.wait();
      continue;
    }

    int32_t victim = pick_victim();
    if (victim < 0) {
      // Every slot is loading or pinned. Each of those ends with
      // release_slot(), which wakes every waiter (see there).
      co_await slot_waiters_.wait();
      continue;
    }
    ++misses_;
    ++loads_;
    Slot& slot = slots_[static_cast<size_t>(victim)];
    if (slot.index >= 0) slot_of_.erase(static_cast<uint32_t>(slot.index));
    if (!slot.data) slot.data = std::make_unique<uint8_t[]>(table_bytes_);
    slot.index = index;
    slot.loading = true;
    slot.referenced = true;
    slot_of_.insert(index, victim);

    Status st = co_await file.pread(static_cast<int64_t>(file_offset), slot.data.get(),
                                    table_bytes_);
    slot.loading = false;
    slot.load_waiters.notify_all();
    if (!st) {
      slot_of_.erase(index);
      slot.index = -1;
      release_slot();
      co_return std::unexpected(st.error());
    }
    release_slot();
    co_return slot.data.get();
  }
}

uint8_t* GrainTableCache::install(uint32_t index) {
  if (uint8_t* t = lookup(index)) return t;
  if (slot_of_.find(index) >= 0) return nullptr;  // being loaded
  int32_t victim = pick_victim();
  if (victim < 0) return nullptr;
  Slot& slot = slots_[static_cast<size_t>(victim)];
  if (slot.index >= 0) slot_of_.erase(static_cast<uint32_t>(slot.index));
  if (!slot.data) slot.data = std::make_unique<uint8_t[]>(table_bytes_);
  std::fill_n(slot.data.get(), table_bytes_, 0);
  slot.index = index;
  slot.referenced = true;
  slot_of_.insert(index, victim);
  return slot.data.get();
}

GrainTableCache::Pin::Pin(GrainTableCache* c, uint32_t index) : cache_(c) {
  slot_ = c->slot_of_.find(index);
  if (slot_ >= 0)
    ++c->slots_[static_cast<size_t>(slot_)].pins;
  else
    cache_ = nullptr;
}

GrainTableCache::Pin::~Pin() {
  if (!cache_) return;
  Slot& s = cache_->slots_[static_cast<size_t>(slot_)];
  if (--s.pins == 0) cache_->release_slot();
}

}  // namespace coblk::vmdk
