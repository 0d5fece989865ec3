// Helpers shared by the driver tests: open option strings through the
// graph, blocking read/write wrappers, host file access.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "block/block_graph.h"
#include "block/block_node.h"
#include "block/options.h"
#include "coroutine/sync_wait.h"
#include "tests/coroutine/test_loop.h"
#include "tests/io/temp_file.h"

namespace coblk::testing_util {

inline std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>((i * 131 + seed * 7 + 1) & 0xff);
  return v;
}

inline std::vector<uint8_t> ReadHostFile(const std::string& path, off_t offset, size_t len) {
  std::vector<uint8_t> v(len, 0);
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = pread(fd, v.data(), len, offset);
    (void)n;
    ::close(fd);
  }
  return v;
}

inline bool WriteHostFile(const std::string& path, off_t offset, const std::vector<uint8_t>& d) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = pwrite(fd, d.data(), d.size(), offset) == static_cast<ssize_t>(d.size());
  ::close(fd);
  return ok;
}

inline int64_t HostFileSize(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

class DriverTest : public LoopTest {
 protected:
  void TearDown() override {
    for (auto& n : nodes_) sync_wait(loop(), n->close());
    nodes_.clear();
  }

  Result<std::shared_ptr<BlockNode>> Open(const std::string& text, bool read_only = false) {
    auto opts = Options::Parse(text);
    if (!opts) return std::unexpected(opts.error());
    BlockGraph graph(loop());
    auto r = sync_wait(loop(), graph.open(std::move(*opts), OpenFlags{.read_only = read_only}));
    if (r) nodes_.push_back(*r);
    return r;
  }

  // Opens or fails the test (check with ASSERT_TRUE(node)).
  std::shared_ptr<BlockNode> MustOpen(const std::string& text, bool read_only = false) {
    auto r = Open(text, read_only);
    EXPECT_TRUE(r.has_value()) << text << ": " << r.error().ToString();
    return r ? *r : nullptr;
  }

  void Close(std::shared_ptr<BlockNode>& node) {
    sync_wait(loop(), node->close());
    std::erase(nodes_, node);
    node.reset();
  }

  Status Write(BlockNode& n, int64_t offset, const std::vector<uint8_t>& data, uint32_t flags = 0) {
    return sync_wait(loop(), n.pwrite(offset, data.data(), static_cast<int64_t>(data.size()), flags));
  }

  Result<std::vector<uint8_t>> Read(BlockNode& n, int64_t offset, size_t len, uint8_t fill = 0) {
    std::vector<uint8_t> buf(len, fill);
    Status s = sync_wait(loop(), n.pread(offset, buf.data(), static_cast<int64_t>(len)));
    if (!s) return std::unexpected(s.error());
    return buf;
  }

  Result<BlockStatus> GetStatus(BlockNode& n, int64_t offset, int64_t bytes, bool want_zero = true) {
    return sync_wait(loop(), n.block_status(want_zero, offset, bytes));
  }

  static std::string InfoValue(BlockNode& n, const std::string& key) {
    for (const auto& [k, v] : n.get_specific_info().values)
      if (k == key) return v;
    return {};
  }

  std::vector<std::shared_ptr<BlockNode>> nodes_;
};

}  // namespace coblk::testing_util
