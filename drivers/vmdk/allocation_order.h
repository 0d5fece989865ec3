// AllocationOrder: the grains of one write request are written at once, but
// take their space in the file in offset order, so a big write stays
// sequential on disk and a stream's grains stay in LBA order. Piece k may
// allocate only after every earlier piece has allocated or finished.
#pragma once

#include <cstddef>
#include <vector>

#include "coroutine/co_queue.h"
#include "coroutine/task.h"

namespace coblk::vmdk {

class AllocationOrder {
 public:
  explicit AllocationOrder(size_t pieces) : done_(pieces, false) {}

  Task<void> wait_turn(size_t k) {
    while (next_ < k) co_await turn_.wait();
  }
  // Piece k has allocated, or will not. Idempotent.
  void done(size_t k) {
    if (done_[k]) return;
    done_[k] = true;
    while (next_ < done_.size() && done_[next_]) ++next_;
    turn_.notify_all();
  }

 private:
  size_t next_ = 0;  // lowest piece not done
  std::vector<bool> done_;
  CoQueue turn_;
};

// A piece's place in its request; no order for a lone piece.
struct PieceOrder {
  AllocationOrder* order;
  size_t index;
};

}  // namespace coblk::vmdk
