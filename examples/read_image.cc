// Embedding example: open any image coblk can read (format probed) and copy
// its guest-visible contents to a raw file, with the blocking BlockBackend API.
// Usage: coblk-example-read_image IMAGE OUTPUT.raw
#include <cstdio>
#include <vector>

#include "block/block_backend.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s IMAGE OUTPUT\n", argv[0]);
    return 2;
  }
  auto loop = coblk::EventLoop::Create();
  if (!loop) return std::fprintf(stderr, "%s\n", loop.error().ToString().c_str()), 1;
  auto blk = coblk::BlockBackend::Open(**loop, argv[1], {}, coblk::OpenFlags{.read_only = true});
  if (!blk) return std::fprintf(stderr, "%s\n", blk.error().ToString().c_str()), 1;
  FILE* out = std::fopen(argv[2], "wb");
  if (!out) return std::perror(argv[2]), 1;
  std::vector<char> buf(1 << 20);
  const int64_t size = (*blk)->size();
  for (int64_t off = 0; off < size; off += static_cast<int64_t>(buf.size())) {
    const int64_t n = std::min<int64_t>(static_cast<int64_t>(buf.size()), size - off);
    if (auto s = (*blk)->read(off, buf.data(), n); !s) {
      std::fprintf(stderr, "read at %lld: %s\n", static_cast<long long>(off), s.error().ToString().c_str());
      return 1;
    }
    if (std::fwrite(buf.data(), 1, static_cast<size_t>(n), out) != static_cast<size_t>(n))
      return std::perror("write"), 1;
  }
  std::fclose(out);
  std::printf("copied %lld bytes\n", static_cast<long long>(size));
  return 0;
}
