// Deterministic mutation test of the whole read path: thousands of small
// valid images of every kind (monolithicSparse with zeroed grains,
// streamOptimized with and without footer, VMDK3, seSparse, a descriptor
// with SPARSE + FLAT + ZERO extents) get header / GD / GT / descriptor /
// compressed-grain bytes corrupted with a fixed seed, then are opened, read
// completely, block-status walked and checked. Errors are fine; crashes,
// hangs, sanitizer reports and huge allocations are not. Meant for the
// ASan+UBSan build too.
#include <gtest/gtest.h>

#include <random>

#include "tests/drivers/vmdk/vmdk_image_util.h"

namespace coblk::vmdk::test {
namespace {

#ifdef COBLK_SANITIZE
constexpr int kIterations = 2400;
#else
constexpr int kIterations = 6000;
#endif

struct Base {
  std::string name;
  Bytes file;
  std::vector<Region> hot;  // where most mutations go
  bool is_descriptor = false;
};

// Rewrites a file in place. (Truncating to zero and rewriting makes ext4
// flush on close - auto_da_alloc - which would make every iteration wait
// for the disk.)
bool Overwrite(const std::string& path, const Bytes& b) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  bool ok = (b.empty() || pwrite(fd, b.data(), b.size(), 0) == static_cast<ssize_t>(b.size())) &&
            ftruncate(fd, static_cast<off_t>(b.size())) == 0;
  ::close(fd);
  return ok;
}

class MutationRead : public VmdkImageTest {
 protected:
  std::vector<Base> Bases() {
    std::vector<Base> b;
    const uint64_t size = 1 << 20;
    auto add = [&](const std::string& name, BuiltImage img) {
      b.push_back({name, std::move(img.file), std::move(img.metadata)});
    };
    add("sparse", BuildVmdk4(size, false, true,
                             {{0, GrainKind::kData, 1}, {1, GrainKind::kZero}, {5, GrainKind::kData, 2},
                              {6, GrainKind::kData, 3}}));
    add("stream", BuildVmdk4(size, true, false, {{0, GrainKind::kData, 4}, {9, GrainKind::kData, 5}}));
    add("stream-footer",
        BuildVmdk4(size, true, false, {{2, GrainKind::kData, 6}, {15, GrainKind::kData, 7}}, true));
    add("vmdk3", BuildVmdk3(2048, {{0, GrainKind::kData, 8}, {3, GrainKind::kData, 9}}));
    add("sesparse", BuildSeSparse(2048, {{0, GrainKind::kData, 10}, {1, GrainKind::kZero, 1},
                                         {2, GrainKind::kZero, 0}, {7, GrainKind::kData, 11}}));
    // A descriptor with a sparse extent, a flat extent and a zero extent.
    BuiltImage sparse = BuildVmdk4(size, false, false, {{1, GrainKind::kData, 12}});
    EXPECT_TRUE(WriteFile(dir_ / "s.vmdk", sparse.file));
    EXPECT_TRUE(WriteFile(dir_ / "f.img", testing_util::Pattern(size, 13)));
    std::string d = SimpleDescriptor("twoGbMaxExtentSparse",
                                     {"RW 2048 SPARSE \"s.vmdk\"", "RW 2048 FLAT \"f.img\" 0",
                                      "RW 100 ZERO"});
    Bytes text(d.begin(), d.end());
    b.push_back({"descriptor", text, {{0, text.size()}}, true});
    return b;
  }

  void Mutate(Bytes& f, const std::vector<Region>& hot, std::mt19937_64& rng, bool text) {
    const int n = 1 + static_cast<int>(rng() % 8);
    for (int i = 0; i < n; ++i) {
      size_t pos;
      if (!hot.empty() && rng() % 10 < 8) {
        const Region& r = hot[rng() % hot.size()];
        if (r.length == 0) continue;
        // Bias to the first bytes of a region (header fields, first entries).
        const uint64_t span = rng() % 2 ? std::min<uint64_t>(r.length, 96) : r.length;
        pos = static_cast<size_t>(r.offset + rng() % span);
      } else {
        pos = static_cast<size_t>(rng() % f.size());
      }
      if (pos >= f.size()) continue;
      if (text) {
        static const char kChars[] = "0123456789 \"\n=#-xRWFLATSPARSEZERO/.:";
        f[pos] = static_cast<uint8_t>(kChars[rng() % (sizeof kChars - 1)]);
        continue;
      }
      switch (rng() % 6) {
        case 0: f[pos] = static_cast<uint8_t>(rng()); break;
        case 1: f[pos] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;
        case 2: f[pos] = 0xff; break;
        case 3: f[pos] = 0; break;
        case 4: f[pos] = static_cast<uint8_t>(f[pos] + 1); break;
        default: f[pos] = static_cast<uint8_t>(f[pos] - 1); break;
      }
    }
    if (rng() % 16 == 0) f.resize(static_cast<size_t>(rng() % (f.size() + 1)));  // truncation
  }

  // Reads, walks and checks whatever opened. Bounded work for huge sizes.
  void Exercise(BlockNode& node, std::mt19937_64& rng) {
    const int64_t size = node.size();
    std::vector<uint8_t> buf(65536);
    auto read = [&](int64_t off, int64_t len) {
      len = std::min<int64_t>({len, size - off, static_cast<int64_t>(buf.size())});
      if (off < 0 || len <= 0) return;
      (void)sync_wait(loop(), node.pread(off, buf.data(), len));
    };
    if (size <= (4 << 20)) {
      for (int64_t off = 0; off < size; off += 65536) read(off, 65536);
    } else {
      read(0, 65536);
      read(size - 65536, 65536);
      for (int i = 0; i < 8; ++i) read(static_cast<int64_t>(rng() % static_cast<uint64_t>(size)), 5000);
    }
    read(static_cast<int64_t>(rng() % static_cast<uint64_t>(std::max<int64_t>(size, 1))), 3333);
    int64_t off = 0;
    for (int steps = 0; off < size && steps < 512; ++steps) {
      auto st = sync_wait(loop(), node.block_status_above(nullptr, true, off, size - off));
      if (!st) break;
      ASSERT_GT(st->pnum, 0);
      off += st->pnum;
    }
    if (size <= (4 << 20)) (void)sync_wait(loop(), node.check(false));
    (void)node.get_info();
  }

  ScratchDir dir_;
};

TEST_F(MutationRead, RandomCorruptionNeverCrashes) {
  const std::vector<Base> bases = Bases();
  std::mt19937_64 rng(0xc0b1c0ffee);
  std::vector<int> opened(bases.size(), 0);
  const std::string path = dir_ / "m.vmdk";
  for (int i = 0; i < kIterations; ++i) {
    const Base& b = bases[static_cast<size_t>(i) % bases.size()];
    Bytes f = b.file;
    Mutate(f, b.hot, rng, b.is_descriptor);
    ASSERT_TRUE(Overwrite(path, f));
    SCOPED_TRACE(b.name + " iteration " + std::to_string(i));
    // Buffered: the file was just written through the page cache, and an
    // O_DIRECT read would wait for its writeback every iteration.
    auto node = OpenVmdk(path, ",file.cache.direct=off,file.cache.no-flush=on");
    if (!node) {
      EXPECT_FALSE(node.error().message().empty());
      continue;
    }
    ++opened[static_cast<size_t>(i) % bases.size()];
    Exercise(**node, rng);
    Close(*node);
    if (HasFatalFailure()) return;
  }
  // The mutations must not all be rejected at open (then reads would go
  // untested): every kind opens in a good share of the iterations.
  for (size_t k = 0; k < bases.size(); ++k)
    EXPECT_GT(opened[k], kIterations / static_cast<int>(bases.size()) / 10) << bases[k].name;
}

// Small valid images of every kind read back exactly (the mutation bases
// are meaningful).
TEST_F(MutationRead, BasesAreValid) {
  const std::vector<Base> bases = Bases();
  const std::string path = dir_ / "m.vmdk";
  for (const Base& b : bases) {
    SCOPED_TRACE(b.name);
    ASSERT_TRUE(WriteFile(path, b.file));
    auto node = OpenVmdk(path);
    ASSERT_TRUE(node) << node.error().ToString();
    auto all = ReadRange(**node, 0, (*node)->size());
    ASSERT_TRUE(all) << all.error().ToString();
    auto check = sync_wait(loop(), (*node)->check(false));
    ASSERT_TRUE(check);
    EXPECT_EQ(check->corruptions, 0);
    Close(*node);
  }
}

}  // namespace
}  // namespace coblk::vmdk::test
