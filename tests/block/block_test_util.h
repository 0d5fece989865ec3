// Helpers shared by the block layer tests.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "block/block_graph.h"
#include "coroutine/sync_wait.h"
#include "io/event_loop.h"
#include "tests/block/test_drivers.h"

namespace coblk::test {

// Opens a node graph from an option string, driving the loop.
inline Result<std::shared_ptr<BlockNode>> OpenNode(EventLoop& loop, const std::string& text,
                                                   OpenFlags flags = {},
                                                   BlockGraph* graph = nullptr) {
  Result<Options> opts = Options::Parse(text);
  if (!opts) return std::unexpected(opts.error());
  BlockGraph local(loop);
  BlockGraph& g = graph ? *graph : local;
  return sync_wait(loop, g.open(std::move(*opts), flags));
}

inline TestMemNode* Mem(const std::shared_ptr<BlockNode>& n) {
  return dynamic_cast<TestMemNode*>(n.get());
}

}  // namespace coblk::test
