// Helpers for the VMDK write-side tests: creating images through coblk,
// a shadow model of guest content, and qemu-img / qemu-io cross-checks.
#pragma once

#include <gtest/gtest.h>

#include "block/block_graph.h"
#include "io/aligned_buffer.h"
#include "tests/drivers/vmdk/vmdk_image_util.h"

namespace coblk::vmdk::test {

constexpr int64_t kKiB = 1024;
constexpr int64_t kMiB_ = 1 << 20;
constexpr int64_t kGiB_ = int64_t{1} << 30;

// One guest write: data (pattern byte != 0 or seeded), zeroes, or compressed.
struct WriteOp {
  enum Kind { kData, kZero, kCompressed } kind = kData;
  int64_t offset = 0, length = 0;
  uint8_t pattern = 0;  // qemu-io -P value
};

// Guest content only where it was written; the rest is zero. Sparse, so
// > 2 GiB disks stay cheap.
class Shadow {
 public:
  void Apply(const WriteOp& w) {
    Apply(w.offset, w.kind == WriteOp::kZero ? Bytes(static_cast<size_t>(w.length), 0)
                                              : Bytes(static_cast<size_t>(w.length), w.pattern));
  }
  void Apply(int64_t offset, const Bytes& data) {
    for (size_t i = 0; i < data.size();) {
      const int64_t pos = offset + static_cast<int64_t>(i);
      const int64_t chunk = pos / kChunk;
      Bytes& c = chunks_[chunk];
      if (c.empty()) c.assign(kChunk, 0);
      const size_t in = static_cast<size_t>(pos % kChunk);
      const size_t n = std::min(data.size() - i, static_cast<size_t>(kChunk) - in);
      std::copy_n(data.begin() + static_cast<std::ptrdiff_t>(i), n,
                  c.begin() + static_cast<std::ptrdiff_t>(in));
      i += n;
    }
  }
  Bytes Get(int64_t offset, int64_t len) const {
    Bytes out(static_cast<size_t>(len), 0);
    for (int64_t i = 0; i < len;) {
      const int64_t pos = offset + i;
      const int64_t in = pos % kChunk;
      const int64_t n = std::min(len - i, kChunk - in);
      auto it = chunks_.find(pos / kChunk);
      if (it != chunks_.end())
        std::copy_n(it->second.begin() + in, n, out.begin() + i);
      i += n;
    }
    return out;
  }
  // Chunk starts that were ever touched.
  std::vector<int64_t> Touched() const {
    std::vector<int64_t> v;
    for (const auto& [c, b] : chunks_) v.push_back(c * kChunk);
    return v;
  }
  static constexpr int64_t kChunk = 1 << 20;

 private:
  std::map<int64_t, Bytes> chunks_;
};

inline std::string QemuIoCommand(const WriteOp& w) {
  const std::string range = std::to_string(w.offset) + " " + std::to_string(w.length);
  switch (w.kind) {
    case WriteOp::kZero: return "write -z " + range;
    case WriteOp::kCompressed: return "write -c -P " + std::to_string(w.pattern) + " " + range;
    default: return "write -P " + std::to_string(w.pattern) + " " + range;
  }
}

// Writes that qemu-io applies to a raw file (compressed writes are plain there).
inline std::string QemuIoRawArgs(const std::vector<WriteOp>& ws) {
  std::string a;
  for (WriteOp w : ws) {
    if (w.kind == WriteOp::kCompressed) w.kind = WriteOp::kData;
    a += " -c '" + QemuIoCommand(w) + "'";
  }
  return a;
}

// Read-back verification of every write's final content with qemu-io -P.
inline std::string QemuIoVerifyArgs(const Shadow& s, const std::vector<WriteOp>& ws) {
  std::string a;
  for (const WriteOp& w : ws) {
    Bytes b = s.Get(w.offset, w.length);
    // Only ranges still uniform (not partly overwritten later) can use -P.
    if (std::all_of(b.begin(), b.end(), [&](uint8_t x) { return x == b[0]; }))
      a += " -c 'read -P " + std::to_string(b[0]) + " " + std::to_string(w.offset) + " " +
           std::to_string(w.length) + "'";
  }
  return a;
}

// Runs cmd with stderr merged into *out.
inline int ShOut(const std::string& cmd, std::string* out) {
  return Sh("{ " + cmd + " 2>&1 ; }", out);
}

// Fault-point sweeps (every write or flush that can fail or be lost) run
// whole in the release build. The ASan+UBSan build, where each point costs
// several times as much, takes every fourth: it is there for memory errors
// on the error paths, which a sample of the points reaches.
#ifdef COBLK_SANITIZE
inline constexpr int kFaultSweepStride = 4;
#else
inline constexpr int kFaultSweepStride = 1;
#endif

class VmdkWriteTest : public VmdkImageTest {
 protected:
  // CreateImage through the vmdk driver, "key=value,..." create options.
  Status Create(const std::string& path, const std::string& opts_text) {
    auto o = Options::Parse(opts_text);
    if (!o) return std::unexpected(o.error());
    return sync_wait(loop(), CreateImage(loop(), "vmdk", path, *o));
  }

  Result<std::shared_ptr<BlockNode>> OpenRw(const std::string& path, const std::string& extra = "") {
    return OpenVmdk(path, extra, /*read_only=*/false);
  }

  // Applies one op to the node (and the shadow).
  Status Apply(BlockNode& n, const WriteOp& w, Shadow* shadow = nullptr,
               uint32_t zero_flags = kReqMayUnmap) {
    Status st;
    if (w.kind == WriteOp::kZero) {
      st = sync_wait(loop(), n.pwrite_zeroes(w.offset, w.length, zero_flags));
    } else {
      AlignedBuffer buf(static_cast<size_t>(w.length), 4096);
      std::memset(buf.data(), w.pattern, static_cast<size_t>(w.length));
      if (w.kind == WriteOp::kCompressed) {
        IoVector v(buf.data(), static_cast<size_t>(w.length));
        st = sync_wait(loop(), n.pwritev_compressed(w.offset, w.length, v));
      } else {
        st = sync_wait(loop(), n.pwrite(w.offset, buf.data(), w.length));
      }
    }
    if (st && shadow) shadow->Apply(w);
    return st;
  }

  // Every touched chunk (plus chunk 0 and the last one) read back equals the shadow.
  void ExpectContent(BlockNode& n, const Shadow& s) {
    std::vector<int64_t> at = s.Touched();
    at.push_back(0);
    at.push_back((n.size() - 1) / Shadow::kChunk * Shadow::kChunk);
    for (int64_t off : at) {
      const int64_t len = std::min<int64_t>(Shadow::kChunk, n.size() - off);
      auto got = ReadRange(n, off, len);
      ASSERT_TRUE(got) << got.error().ToString();
      Bytes want = s.Get(off, len);
      if (*got != want) {
        size_t i = 0;
        while ((*got)[i] == want[i]) ++i;
        FAIL() << "content differs at " << off + static_cast<int64_t>(i) << ": got "
               << int((*got)[i]) << " want " << int(want[i]);
      }
    }
  }

  static void ExpectQemuCheckClean(const std::string& img) {
    std::string out;
    const int rc = ShOut("qemu-img check -f vmdk " + img, &out);
    EXPECT_EQ(rc, 0) << "qemu-img check " << img << ":\n" << out;
  }

  void ExpectCoblkCheckClean(const std::string& img) {
    auto node = OpenVmdk(img);
    ASSERT_TRUE(node) << node.error().ToString();
    auto r = sync_wait(loop(), (*node)->check(false));
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_EQ(r->corruptions, 0) << (r->messages.empty() ? "" : r->messages[0]);
    EXPECT_EQ(r->check_errors, 0);
    Close(*node);
  }

  // coblk's check after a crash: every corruption is a redundant grain
  // table lagging the primary (written primary first; a crash between the
  // two writes leaves that); counted in *lagging.
  void ExpectOnlyRedundantLag(const std::string& img, int64_t* lagging = nullptr) {
    auto node = OpenVmdk(img);
    ASSERT_TRUE(node) << node.error().ToString();
    auto r = sync_wait(loop(), (*node)->check(0));
    ASSERT_TRUE(r) << r.error().ToString();
    EXPECT_EQ(r->check_errors, 0);
    int64_t lags = 0;
    for (const auto& m : r->messages) {
      if (m.find("(the redundant lags)") != std::string::npos) {
        ++lags;
      } else if (m.starts_with("ERROR")) {
        ADD_FAILURE() << img << ": " << m;
      }
    }
    if (r->corruptions <= 100) {
      EXPECT_EQ(lags, r->corruptions);
    }
    if (lagging) *lagging += r->corruptions;
    Close(*node);
  }

  // coblk-img check -r all through the driver: afterwards coblk's check
  // finds no corruption (and qemu-img's none, when qemu_check), and a
  // second repair changes nothing. Returns the first repair's result.
  CheckResult ExpectRepairCleans(const std::string& img, bool qemu_check = true) {
    CheckResult first;
    auto repair = [&](CheckResult* out) {
      auto node = OpenRw(img);
      ASSERT_TRUE(node) << node.error().ToString();
      auto r = sync_wait(loop(), (*node)->check(kCheckFixAll));
      ASSERT_TRUE(r) << r.error().ToString();
      EXPECT_EQ(r->check_errors, 0);
      *out = *r;
      Close(*node);
    };
    repair(&first);
    ExpectCoblkCheckClean(img);
    if (qemu_check && HaveQemu()) ExpectQemuCheckClean(img);
    const Bytes before = ReadFile(img);
    CheckResult second;
    repair(&second);
    EXPECT_EQ(second.corruptions_fixed, 0) << img;
    EXPECT_EQ(second.leaks_fixed, 0) << img;
    EXPECT_TRUE(ReadFile(img) == before) << img << ": a second repair changed the file";
    return first;
  }

  static std::string Descriptor(const std::string& path) {
    Bytes b = ReadFile(path);
    if (b.size() >= 4 && b[0] == 'K' && b[1] == 'D' && b[2] == 'M') {
      // Embedded at sector 1 (desc_offset in the header), up to the first NUL.
      const uint64_t off = LoadLe64(b, 28) * 512, size = LoadLe64(b, 36) * 512;
      std::string s(b.begin() + static_cast<std::ptrdiff_t>(off),
                    b.begin() + static_cast<std::ptrdiff_t>(std::min<uint64_t>(off + size, b.size())));
      return s.substr(0, s.find('\0'));
    }
    // A descriptor file: its text ends at the first NUL too (after a CID
    // update the file is padded to whole sectors, as QEMU's).
    std::string s(b.begin(), b.end());
    return s.substr(0, s.find('\0'));
  }

  static std::string DescValue(const std::string& desc, const std::string& key) {
    size_t p = 0;
    while ((p = desc.find(key, p)) != std::string::npos) {
      if (p == 0 || desc[p - 1] == '\n') {
        size_t eq = desc.find('=', p), nl = desc.find('\n', p);
        std::string v = desc.substr(eq + 1, nl - eq - 1);
        v.erase(0, v.find_first_not_of(" \""));
        v.erase(v.find_last_not_of(" \"") + 1);
        return v;
      }
      p += key.size();
    }
    return {};
  }

  void Close(std::shared_ptr<BlockNode> n) { DriverTest::Close(n); }
};

}  // namespace coblk::vmdk::test
