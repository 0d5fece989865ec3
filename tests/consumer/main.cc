// Opens an image with the built-in drivers (file, raw, vmdk, ...): fails if
// their registrations were dropped by the linker.
#include <cstdio>

#include "block/block_backend.h"

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  auto loop = coblk::EventLoop::Create();
  if (!loop) return 1;
  auto disk = coblk::BlockBackend::Open(**loop, argv[1], {});
  if (!disk) {
    std::fprintf(stderr, "%s\n", disk.error().ToString().c_str());
    return 1;
  }
  std::printf("size %lld\n", static_cast<long long>((*disk)->size()));
  return 0;
}
