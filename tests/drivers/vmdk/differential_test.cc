// Seeded differential random test of VMDK writes, run as a user would:
// the same qemu-io command script goes through coblk-io (or, on alternate
// opens, qemu-io) on a VMDK image and through qemu-io on a raw image, in
// 1-4 opens per image, with random cache modes and grain-table cache sizes.
// After each image: qemu-img compare with the raw model, qemu-img check and
// coblk-img check without corruption, coblk-img map equal to qemu-img map.
//
// Variants: every writable subformat, zeroed_grain on/off, images created
// by coblk-img and by qemu-img. CI runs one seed per variant. To run many:
//   COBLK_DIFF_SEEDS=1000 COBLK_DIFF_FIRST_SEED=1 (one line with:)
//     build/bin/drivers_vmdk_test --gtest_filter='*Differential*'
//   (COBLK_DIFF_VARIANT=stream restricts to variants whose name contains it,
//   COBLK_DIFF_BIN_DIR=dir takes coblk-io / coblk-img from dir)
// A failure prints the seed and the shell commands that replay it.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdlib>
#include <random>
#include <set>
#include <sstream>

#include "tests/drivers/vmdk/vmdk_write_util.h"

namespace coblk::vmdk::test {
namespace {

constexpr int64_t kGrain = 65536;
constexpr int64_t kTwoGiB = int64_t{1} << 31;

struct Variant {
  std::string subformat;
  bool zeroed_grain;
  bool qemu_create;
  std::string Name() const {
    return (qemu_create ? "qemu_" : "coblk_") + subformat + (zeroed_grain ? "_zg" : "");
  }
  bool stream() const { return subformat == "streamOptimized"; }
  bool two_gb() const { return subformat.starts_with("twoGb"); }
};

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::strtoll(v, nullptr, 10) : fallback;
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

// One seed's run over one variant.
class DiffRun {
 public:
  DiffRun(const Variant& v, uint64_t seed, const std::string& dir)
      : v_(v), seed_(seed), rng_(seed * 1000003 + std::hash<std::string>{}(v.Name())), dir_(dir) {
    size_ = v.two_gb() ? kTwoGiB + 8 * kMiB_ + 1536 : 64 * kMiB_ + 1536;
    img_ = dir + "/d.vmdk";
    raw_ = dir + "/model.raw";
  }

  // Returns "" on success, else the failure with a replay script.
  std::string Execute() {
    // COBLK_DIFF_BIN_DIR: tools to test instead of this build's (e.g. a
    // copy, so a long run is not disturbed by rebuilding).
    const char* bin_env = std::getenv("COBLK_DIFF_BIN_DIR");
    const std::string bin = bin_env && *bin_env ? bin_env : COBLK_BIN_DIR;
    std::string opts = "subformat=" + v_.subformat + (v_.zeroed_grain ? ",zeroed_grain=on" : "");
    const std::string sz = std::to_string(size_);
    if (!Do((v_.qemu_create ? "qemu-img" : bin + "/coblk-img") + " create -q -f vmdk -o " + opts +
            " " + img_ + " " + sz))
      return Fail("create");
    if (!Do("qemu-img create -q -f raw " + raw_ + " " + sz)) return Fail("create raw");
    const int opens = 1 + static_cast<int>(rng_() % 4);
    for (int o = 0; o < opens; ++o) {
      // The first open is coblk's; later ones alternate at random.
      const bool qemu = o > 0 && rng_() % 2 == 0;
      const bool read_only = qemu && v_.stream();  // QEMU cannot append to a footer stream
      std::vector<std::string> cmds = Script(read_only);
      static const char* kCaches[] = {"none", "writeback", "writethrough", "directsync", "unsafe"};
      const std::string cache = kCaches[rng_() % 5];
      std::string vm;
      if (qemu) {
        vm = "qemu-io -f vmdk -t " + cache + (read_only ? " -r" : "");
      } else {
        static const char* kL2[] = {",l2-cache-size=2048", ",l2-cache-size=8192", ""};
        vm = bin + "/coblk-io -t " + cache + " --image-opts";
        img_arg_ = Quote("driver=vmdk" + std::string(kL2[rng_() % 3]) + ",file.filename=" + img_);
      }
      std::string args;
      std::string raw_args;
      for (const auto& c : cmds) {
        args += " -c " + Quote(c);
        if (!c.starts_with("discard")) raw_args += " -c " + Quote(c);
      }
      if (!Do(vm + args + " " + (qemu ? img_ : img_arg_), true)) return Fail("open " + std::to_string(o));
      if (!raw_args.empty() && !Do("qemu-io -f raw -t writeback" + raw_args + " " + raw_, true))
        return Fail("model open " + std::to_string(o));
    }
    if (!Do("qemu-img compare -f raw -F vmdk " + raw_ + " " + img_)) return Fail("compare");
    if (!Do("qemu-img check -q -f vmdk " + img_)) return Fail("qemu-img check");
    // No corruption; leaks (exit 3) are allowed: zeroing or discarding an
    // allocated grain leaves its space unreferenced, in QEMU too.
    if (!Do("{ " + bin + "/coblk-img check " + img_ + "; r=$?; [ $r -eq 0 ] || [ $r -eq 3 ]; }"))
      return Fail("coblk-img check");
    std::string ours, theirs;
    if (Sh(bin + "/coblk-img map --output=json " + img_, &ours) != 0 ||
        Sh("qemu-img map --output=json -f vmdk " + img_, &theirs) != 0)
      return Fail("map");
    if (nlohmann::json::parse(ours, nullptr, false) != nlohmann::json::parse(theirs, nullptr, false))
      return Fail("map differs:\ncoblk-img:\n" + ours + "qemu-img:\n" + theirs);
    return "";
  }

 private:
  // Runs a command, recording it for the replay script; false if it
  // failed or reported a failed request.
  bool Do(const std::string& cmd, bool scan_output = false) {
    replay_ += cmd + "\n";
    std::string out;
    const int rc = ShOut(cmd, &out);
    last_output_ = out;
    return rc == 0 && (!scan_output || (out.find("failed") == std::string::npos &&
                                        out.find("rror") == std::string::npos));
  }

  std::string Fail(const std::string& what) {
    std::ostringstream s;
    s << "variant " << v_.Name() << " seed " << seed_ << ": " << what << " failed\n"
      << last_output_ << "\nreplay (in an empty directory, paths as below):\n"
      << replay_;
    return s.str();
  }

  // A random byte range of the disk, of one of the interesting shapes.
  std::pair<int64_t, int64_t> Range() {
    int64_t off = 0, len = 0;
    switch (rng_() % (v_.two_gb() ? 6 : 5)) {
      case 0:  // inside one sector
        off = static_cast<int64_t>(rng_() % static_cast<uint64_t>(size_));
        len = 1 + static_cast<int64_t>(rng_() % 511);
        break;
      case 1: {  // straddling a grain boundary
        const int64_t g = 1 + static_cast<int64_t>(rng_() % static_cast<uint64_t>(size_ / kGrain - 1));
        off = g * kGrain - 1 - static_cast<int64_t>(rng_() % 8192);
        len = 2 + static_cast<int64_t>(rng_() % (3 * kGrain));
        break;
      }
      case 2:  // the last sectors
        off = size_ - 1 - static_cast<int64_t>(rng_() % 2048);
        len = size_ - off;
        break;
      case 3:  // whole grains
        off = static_cast<int64_t>(rng_() % static_cast<uint64_t>(size_ / kGrain)) * kGrain;
        len = kGrain * (1 + static_cast<int64_t>(rng_() % 4));
        break;
      case 5:  // across the 2 GiB extent boundary
        off = kTwoGiB - 1 - static_cast<int64_t>(rng_() % 200000);
        len = 2 + static_cast<int64_t>(rng_() % 400000);
        break;
      default:  // anywhere, up to 256 KiB
        off = static_cast<int64_t>(rng_() % static_cast<uint64_t>(size_));
        len = 1 + static_cast<int64_t>(rng_() % (256 * 1024));
        break;
    }
    // Biased towards the start, so opens revisit each other's grains.
    if (rng_() % 3 == 0 && off > 8 * kMiB_ && off < size_ - 16 * kMiB_) off %= 8 * kMiB_;
    off = std::clamp<int64_t>(off, 0, size_ - 1);
    len = std::clamp<int64_t>(len, 1, size_ - off);
    return {off, len};
  }

  // Stream grains are written once: true (and marks them) if none of the
  // range's grains was written before.
  bool Claim(int64_t off, int64_t len) {
    if (!v_.stream()) return true;
    for (int64_t g = off / kGrain; g <= (off + len - 1) / kGrain; ++g)
      if (used_.count(g)) return false;
    for (int64_t g = off / kGrain; g <= (off + len - 1) / kGrain; ++g) used_.insert(g);
    return true;
  }

  std::string Rw(const std::string& cmd, int64_t off, int64_t len) {
    return cmd + " " + std::to_string(off) + " " + std::to_string(len);
  }

  // A read of a range whose expected content is one byte value.
  void AddRead(std::vector<std::string>* out, int64_t off, int64_t len) {
    Bytes b = model_.Get(off, len);
    if (std::all_of(b.begin(), b.end(), [&](uint8_t x) { return x == b[0]; }))
      out->push_back(Rw("read -P " + std::to_string(b[0]), off, len));
  }

  std::vector<std::string> Script(bool read_only) {
    std::vector<std::string> out;
    const int ops = 4 + static_cast<int>(rng_() % 14);
    for (int i = 0; i < ops; ++i) {
      const unsigned kind = read_only ? 6 : static_cast<unsigned>(rng_() % 10);
      auto [off, len] = Range();
      const uint8_t pat = static_cast<uint8_t>(1 + rng_() % 254);
      switch (kind) {
        case 0: case 1: case 2:  // write -P
          if (!Claim(off, len)) break;
          out.push_back(Rw("write -P " + std::to_string(pat), off, len));
          model_.Apply(off, Bytes(static_cast<size_t>(len), pat));
          written_.emplace_back(off, len);
          break;
        case 3:  // write -z (whole grains half of the time: zeroed grains)
          // On a stream, only whole grains: the generic layer splits an
          // unaligned zero write into pieces that meet in one grain, and a
          // stream grain takes one write (QEMU fails these too: EINVAL).
          if (v_.stream() || rng_() % 2) {
            off = off / kGrain * kGrain;
            len = std::min(size_ - off, (1 + len / kGrain) * kGrain);
            if (v_.stream() && len % kGrain) break;
          }
          if (!Claim(off, len)) break;
          out.push_back(Rw("write -z", off, len));
          model_.Apply(off, Bytes(static_cast<size_t>(len), 0));
          written_.emplace_back(off, len);
          break;
        case 4:  // discard: no-op on VMDK (as in QEMU); not run on the model
          out.push_back(Rw("discard", off, len));
          break;
        case 5:
          out.push_back(rng_() % 2 ? "flush" : "aio_flush");
          break;
        case 6: {  // read back something written, or anything
          if (!written_.empty() && rng_() % 3) {
            auto [woff, wlen] = written_[rng_() % written_.size()];
            AddRead(&out, woff, wlen);
          } else {
            AddRead(&out, off, std::min<int64_t>(len, 4096));
          }
          break;
        }
        default: {  // a batch of concurrent non-overlapping writes, then aio_flush
          const int n = 2 + static_cast<int>(rng_() % 5);
          std::vector<std::pair<int64_t, int64_t>> batch;
          for (int k = 0; k < n; ++k) {
            auto [o2, l2] = Range();
            bool overlap = false;
            for (auto [bo, bl] : batch) overlap |= o2 < bo + bl && bo < o2 + l2;
            if (overlap || !Claim(o2, l2)) continue;
            batch.emplace_back(o2, l2);
            const uint8_t p2 = static_cast<uint8_t>(1 + rng_() % 254);
            out.push_back(Rw("aio_write -P " + std::to_string(p2), o2, l2));
            model_.Apply(o2, Bytes(static_cast<size_t>(l2), p2));
            written_.emplace_back(o2, l2);
          }
          out.push_back("aio_flush");
          break;
        }
      }
    }
    // End every open by checking what it wrote, then everything before.
    for (size_t k = written_.size() > 6 ? written_.size() - 6 : 0; k < written_.size(); ++k)
      AddRead(&out, written_[k].first, written_[k].second);
    return out;
  }

  Variant v_;
  uint64_t seed_;
  std::mt19937_64 rng_;
  std::string dir_, img_, raw_, img_arg_;
  int64_t size_;
  Shadow model_;
  std::vector<std::pair<int64_t, int64_t>> written_;
  std::set<int64_t> used_;  // stream grains written
  std::string replay_, last_output_;
};

std::vector<Variant> AllVariants() {
  std::vector<Variant> v;
  for (bool qemu : {false, true}) {
    for (const char* sf : {"monolithicSparse", "twoGbMaxExtentSparse", "streamOptimized"}) {
      v.push_back({sf, false, qemu});
      v.push_back({sf, true, qemu});
    }
    v.push_back({"monolithicFlat", false, qemu});
    v.push_back({"twoGbMaxExtentFlat", false, qemu});
  }
  return v;
}

class Differential : public ::testing::TestWithParam<Variant> {};

TEST_P(Differential, CoblkMatchesQemuOnRaw) {
  SKIP_WITHOUT_QEMU();
  const Variant& v = GetParam();
  if (const char* only = std::getenv("COBLK_DIFF_VARIANT"); only && v.Name().find(only) == std::string::npos)
    GTEST_SKIP() << "COBLK_DIFF_VARIANT=" << only;
  const int64_t first = EnvInt("COBLK_DIFF_FIRST_SEED", 1);
  const int64_t seeds = EnvInt("COBLK_DIFF_SEEDS", 1);
  int failures = 0;
  for (int64_t s = first; s < first + seeds && failures < 3; ++s) {
    ScratchDir dir;
    DiffRun run(v, static_cast<uint64_t>(s), dir.path());
    std::string err = run.Execute();
    if (!err.empty()) {
      ++failures;
      ADD_FAILURE() << err;
    }
  }
  if (seeds > 1) std::printf("%s: %lld seeds from %lld\n", v.Name().c_str(),
                             static_cast<long long>(seeds), static_cast<long long>(first));
}

INSTANTIATE_TEST_SUITE_P(Vmdk, Differential, ::testing::ValuesIn(AllVariants()),
                         [](const auto& info) { return info.param.Name(); });

}  // namespace
}  // namespace coblk::vmdk::test
