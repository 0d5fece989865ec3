// Shared helpers for the VMDK image-level tests: scratch directories,
// running qemu-img / qemu-io, in-test image builders (VMDK4 sparse and
// streamOptimized, VMDK3 "COWD", seSparse) and a qemu-img-map style
// block-status walk.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "drivers/vmdk/bytes.h"
#include "drivers/vmdk/compressed.h"
#include "drivers/vmdk/create.h"
#include "drivers/vmdk/descriptor.h"
#include "drivers/vmdk/format.h"
#include "drivers/vmdk/sesparse.h"
#include "tests/drivers/driver_test_util.h"
#include "tests/scratch_dir.h"
#include "tests/shell.h"

namespace coblk::vmdk::test {

using Bytes = std::vector<uint8_t>;

// Runs a shell command; returns its exit status, stdout (only) in *out.
inline int Sh(const std::string& cmd, std::string* out = nullptr) {
  return testing_util::Sh(cmd, out, testing_util::Stderr::kDropped);
}
using testing_util::HaveQemu;

#define SKIP_WITHOUT_QEMU() \
  if (!::coblk::vmdk::test::HaveQemu()) GTEST_SKIP() << "qemu-img/qemu-io not installed"

using ScratchDir = testing_util::ScratchDir;  // tests/scratch_dir.h

inline bool WriteFile(const std::string& path, const void* data, size_t n) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
  return static_cast<bool>(f);
}
inline bool WriteFile(const std::string& path, const Bytes& b) {
  return WriteFile(path, b.data(), b.size());
}
inline bool WriteFile(const std::string& path, const std::string& s) {
  return WriteFile(path, s.data(), s.size());
}
inline Bytes ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) return {};
  Bytes b(static_cast<size_t>(f.tellg()));
  f.seekg(0);
  f.read(reinterpret_cast<char*>(b.data()), static_cast<std::streamsize>(b.size()));
  return b;
}

inline void Put(Bytes& file, uint64_t at, std::span<const uint8_t> data) {
  if (file.size() < at + data.size()) file.resize(at + data.size(), 0);
  std::copy(data.begin(), data.end(), file.begin() + static_cast<std::ptrdiff_t>(at));
}

inline void PadToSector(Bytes& b) { b.resize((b.size() + 511) / 512 * 512, 0); }

// ---------------------------------------------------------------------------
// Image builders. Each returns the file bytes, the guest-visible content and
// the byte ranges of interesting metadata (for mutation tests).

struct Region {
  uint64_t offset = 0, length = 0;
};

struct BuiltImage {
  Bytes file;
  Bytes expected;                 // guest content
  std::vector<Region> metadata;   // header, descriptor, GD, GTs, grain bytes
  uint64_t grain_bytes = 0;
};

enum class GrainKind { kData, kZero };
struct GrainSpec {
  uint64_t index;
  GrainKind kind = GrainKind::kData;
  uint8_t seed = 1;
};

inline std::string SimpleDescriptor(const std::string& create_type,
                                    const std::vector<std::string>& extent_lines,
                                    uint32_t cid = 0x1a2b3c4d,
                                    uint32_t parent_cid = kNoParentCid) {
  char head[160];
  std::snprintf(head, sizeof head,
                "# Disk DescriptorFile\nversion=1\nCID=%08x\nparentCID=%08x\ncreateType=\"%s\"\n\n"
                "# Extent description\n",
                cid, parent_cid, create_type.c_str());
  std::string d = head;
  for (const auto& l : extent_lines) d += l + "\n";
  d += "\n# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\n";
  return d;
}

// A monolithicSparse (compress = false) or streamOptimized (compress = true)
// extent with an embedded descriptor, laid out exactly like qemu-img's.
// footer: streamOptimized with GD_AT_END in the header and a footer.
inline BuiltImage BuildVmdk4(uint64_t size, bool compress, bool zeroed_grain,
                             const std::vector<GrainSpec>& grains, bool footer = false) {
  BuiltImage img;
  auto plan = PlanSparseExtent(static_cast<int64_t>(size), compress, zeroed_grain).value();
  const Vmdk4Header& h = plan.header;
  const uint64_t grain = h.granularity * kSectorSize;
  img.grain_bytes = grain;
  img.file.assign(plan.file_bytes(), 0);
  img.expected.assign(size, 0);
  Vmdk4Header first = h;
  if (footer) first.gd_offset = kGdAtEnd;
  auto hs = first.Encode();
  Put(img.file, 0, hs);
  img.metadata.push_back({0, 512});

  DescriptorSpec spec;
  spec.cid = 0x1a2b3c4d;
  spec.subformat = compress ? Subformat::kStreamOptimized : Subformat::kMonolithicSparse;
  spec.extents.push_back({static_cast<int64_t>(size), "img.vmdk"});
  spec.size_bytes = static_cast<int64_t>(size);
  std::string desc = GenerateDescriptor(spec).value();
  Put(img.file, h.desc_offset * 512, {reinterpret_cast<const uint8_t*>(desc.data()), desc.size()});
  img.metadata.push_back({h.desc_offset * 512, desc.size()});

  const Bytes gd = BuildGrainDirectory(plan, false), rgd = BuildGrainDirectory(plan, true);
  Put(img.file, h.gd_offset * 512, gd);
  Put(img.file, h.rgd_offset * 512, rgd);
  img.metadata.push_back({h.gd_offset * 512, gd.size()});
  img.metadata.push_back({h.rgd_offset * 512, rgd.size()});
  const uint64_t gts = plan.gt_count * plan.gt_sectors * 512;
  img.metadata.push_back({(h.gd_offset + plan.gd_sectors) * 512, gts});
  img.metadata.push_back({(h.rgd_offset + plan.gd_sectors) * 512, gts});

  auto set_gte = [&](uint64_t index, uint32_t value) {
    const uint64_t gt = index / h.num_gtes_per_gt, e = index % h.num_gtes_per_gt;
    for (uint64_t base : {h.gd_offset, h.rgd_offset}) {
      const uint64_t at = (base + plan.gd_sectors + gt * plan.gt_sectors) * 512 + e * 4;
      StoreLe32(img.file, at, value);
    }
  };
  for (const GrainSpec& g : grains) {
    const uint64_t start = g.index * grain;
    const uint64_t len = std::min(grain, size - start);
    if (g.kind == GrainKind::kZero) {
      set_gte(g.index, kGteZeroed);
      continue;
    }
    Bytes data = testing_util::Pattern(grain, g.seed);
    std::fill(data.begin() + static_cast<std::ptrdiff_t>(len), data.end(), 0);
    std::copy(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(len),
              img.expected.begin() + static_cast<std::ptrdiff_t>(start));
    const uint64_t at = img.file.size();
    if (compress) {
      Bytes blob = CompressGrain(data, g.index * h.granularity).value();
      Put(img.file, at, blob);
      img.metadata.push_back({at, blob.size()});
    } else {
      Put(img.file, at, data);
    }
    set_gte(g.index, static_cast<uint32_t>(at / 512));
  }
  if (footer) {
    PadToSector(img.file);
    const Bytes f = EncodeFooter(h);
    const uint64_t at = img.file.size();
    Put(img.file, at, f);
    img.metadata.push_back({at, f.size()});
  }
  return img;
}

// VMDK3 (vmfsSparse, "COWD"): granularity 16 sectors (8 KiB grains), 4096
// GTEs per GT. Grains listed in `grains` get data; GT 1 (if the disk has
// one) is left unallocated in the GD.
inline BuiltImage BuildVmdk3(uint64_t sectors, const std::vector<GrainSpec>& grains,
                             uint32_t granularity = 16) {
  BuiltImage img;
  const uint64_t grain = uint64_t{granularity} * 512;
  img.grain_bytes = grain;
  const uint64_t per_gt = 4096 * uint64_t{granularity};
  const uint32_t l1 = static_cast<uint32_t>((sectors + per_gt - 1) / per_gt);
  Vmdk3Header h;
  h.version = 1;
  h.flags = 3;
  h.disk_sectors = static_cast<uint32_t>(sectors);
  h.granularity = granularity;
  h.l1dir_offset = 4;
  h.l1dir_size = l1;
  img.file.assign(8 * 512, 0);
  img.expected.assign(sectors * 512, 0);
  // GT for directory entry i lives at sector 8 + 32 * i, only if some grain uses it.
  std::map<uint64_t, uint64_t> gt_sector;
  for (const GrainSpec& g : grains) {
    const uint64_t gt = g.index / 4096;
    if (!gt_sector.count(gt)) {
      gt_sector[gt] = img.file.size() / 512;
      img.metadata.push_back({img.file.size(), 4096 * 4});
      img.file.resize(img.file.size() + 4096 * 4, 0);
    }
  }
  for (const auto& [gt, sec] : gt_sector) StoreLe32(img.file, 4 * 512 + gt * 4, static_cast<uint32_t>(sec));
  img.metadata.push_back({4 * 512, l1 * 4ull});
  for (const GrainSpec& g : grains) {
    Bytes data = testing_util::Pattern(grain, g.seed);
    const uint64_t start = g.index * grain;
    const uint64_t len = std::min(grain, sectors * 512 - start);
    std::copy(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(len),
              img.expected.begin() + static_cast<std::ptrdiff_t>(start));
    const uint64_t at = img.file.size();
    Put(img.file, at, data);
    StoreLe32(img.file, gt_sector[g.index / 4096] * 512 + (g.index % 4096) * 4,
              static_cast<uint32_t>(at / 512));
  }
  h.file_sectors = static_cast<uint32_t>(img.file.size() / 512);
  auto hs = h.Encode();
  Put(img.file, 0, hs);
  img.metadata.insert(img.metadata.begin(), {0, 44});
  return img;
}

// seSparse: 4 KiB grains, 4096 GTEs per GT (16 MiB per GT). Layout: const
// header (0), volatile header (1), journal header (2), journal (3), GD
// (4, 1 sector = 64 GTs), GT area (8, one table per GT any grain uses),
// grains after that. kZero grains become "zero" (0x2) GTEs; seed 0 with
// kZero gives the "unmapped" (0x1) form.
inline BuiltImage BuildSeSparse(uint64_t sectors, const std::vector<GrainSpec>& grains) {
  BuiltImage img;
  const uint64_t grain = 4096;
  img.grain_bytes = grain;
  std::map<uint64_t, uint64_t> gt_index;  // directory index -> table number
  for (const GrainSpec& g : grains) gt_index.emplace(g.index / 4096, gt_index.size());
  const uint64_t tables = std::max<uint64_t>(1, gt_index.size());
  uint64_t max_grain = 0;
  uint64_t data_grains = 0;
  for (const GrainSpec& g : grains)
    if (g.kind == GrainKind::kData) ++data_grains;
  SeSparseConstHeader c;
  c.magic = kSeSparseConstMagic;
  c.version = kSeSparseVersion;
  c.capacity = sectors;
  c.grain_size = 8;
  c.grain_table_size = 64;
  c.volatile_header_offset = 1;
  c.volatile_header_size = 1;
  c.journal_header_offset = 2;
  c.journal_header_size = 1;
  c.journal_offset = 3;
  c.journal_size = 1;
  c.grain_dir_offset = 4;
  c.grain_dir_size = 1;
  c.grain_tables_offset = 8;
  c.grain_tables_size = tables * 64;
  c.grains_offset = c.grain_tables_offset + c.grain_tables_size;
  // Grain numbers are assigned in order; one may be placed far away (index
  // >= 4096) to exercise the split grain-index encoding.
  c.grains_size = 8 * std::max<uint64_t>(data_grains + 1, 4200);
  SeSparseVolatileHeader v;
  v.magic = kSeSparseVolatileMagic;
  img.file.assign(c.grains_offset * 512, 0);
  img.expected.assign(sectors * 512, 0);
  for (const auto& [dir, t] : gt_index)
    StoreLe64(img.file, 4 * 512 + dir * 8, EncodeSeSparseGdEntry(static_cast<uint32_t>(t)));
  img.metadata.push_back({0, 512});
  img.metadata.push_back({512, 512});
  img.metadata.push_back({4 * 512, 512});
  img.metadata.push_back({8 * 512, c.grain_tables_size * 512});
  uint64_t next = 0;
  for (const GrainSpec& g : grains) {
    const uint64_t gte_at = (8 + gt_index[g.index / 4096] * 64) * 512 + (g.index % 4096) * 8;
    if (g.kind == GrainKind::kZero) {
      StoreLe64(img.file, gte_at, g.seed == 0 ? 0x1000000000000000ULL : 0x2000000000000000ULL);
      continue;
    }
    // The last data grain goes to grain number 4097 (above 12 bits).
    uint64_t number = next++;
    if (g.seed == 0xee) number = 4097;
    max_grain = std::max(max_grain, number);
    StoreLe64(img.file, gte_at, EncodeSeSparseAllocatedGte(number));
    Bytes data = testing_util::Pattern(grain, g.seed);
    const uint64_t start = g.index * grain;
    const uint64_t len = std::min(grain, sectors * 512 - start);
    std::copy(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(len),
              img.expected.begin() + static_cast<std::ptrdiff_t>(start));
    Put(img.file, (c.grains_offset + number * 8) * 512, data);
  }
  auto cs = c.Encode();
  auto vs = v.Encode();
  Put(img.file, 0, cs);
  Put(img.file, 512, vs);
  return img;
}

// ---------------------------------------------------------------------------
// qemu-img map style entries.

struct MapEntry {
  int64_t start = 0, length = 0;
  bool present = false, zero = false, data = false, has_offset = false;
  int64_t offset = 0;
  bool operator==(const MapEntry&) const = default;
};

inline std::string ToString(const MapEntry& e) {
  char b[200];
  std::snprintf(b, sizeof b, "{start %lld len %lld present %d zero %d data %d offset %lld}",
                static_cast<long long>(e.start), static_cast<long long>(e.length), e.present,
                e.zero, e.data, e.has_offset ? static_cast<long long>(e.offset) : -1LL);
  return b;
}
inline void PrintTo(const MapEntry& e, std::ostream* os) { *os << ToString(e); }

// qemu-img's entry_mergeable (without depth, which is not compared).
inline std::vector<MapEntry> Merge(const std::vector<MapEntry>& in) {
  std::vector<MapEntry> out;
  for (const MapEntry& e : in) {
    if (!out.empty()) {
      MapEntry& c = out.back();
      if (c.present == e.present && c.zero == e.zero && c.data == e.data &&
          c.has_offset == e.has_offset && (!c.has_offset || c.offset + c.length == e.offset) &&
          c.start + c.length == e.start) {
        c.length += e.length;
        continue;
      }
    }
    out.push_back(e);
  }
  return out;
}

// Fixture: opens images through the graph and walks them.
class VmdkImageTest : public testing_util::DriverTest {
 protected:
  // "driver=vmdk,file.filename=<path><extra>", read-only by default.
  Result<std::shared_ptr<BlockNode>> OpenVmdk(const std::string& path,
                                              const std::string& extra = "",
                                              bool read_only = true) {
    return Open("driver=vmdk,file.filename=" + path + extra, read_only);
  }

  // QEMU's qemu-img map walk over block_status_above (asking for `step`
  // bytes at a time), merged; fails if it takes more than max_calls calls.
  Result<std::vector<MapEntry>> Map(BlockNode& n, int64_t step = int64_t{1} << 30,
                                    size_t max_calls = SIZE_MAX) {
    std::vector<MapEntry> raw;
    const int64_t size = n.size();
    for (int64_t off = 0; off < size;) {
      if (raw.size() == max_calls)
        return MakeError(E2BIG, "more than " + std::to_string(max_calls) + " block_status calls");
      const int64_t want = std::min<int64_t>(step, size - off);
      auto st = sync_wait(loop(), n.block_status_above(nullptr, true, off, want));
      if (!st) return std::unexpected(st.error());
      if (st->pnum <= 0) return MakeError(EIO, "block_status made no progress");
      MapEntry e;
      e.start = off;
      e.length = st->pnum;
      e.present = st->status & kStatusAllocated;
      e.zero = st->status & kStatusZero;
      e.data = st->status & kStatusData;
      e.has_offset = st->status & kStatusOffsetValid;
      e.offset = e.has_offset ? st->map : 0;
      raw.push_back(e);
      off += st->pnum;
    }
    return Merge(raw);
  }

  // Reads [offset, offset + len) in chunks of at most 1 MiB.
  Result<Bytes> ReadRange(BlockNode& n, int64_t offset, int64_t len) {
    Bytes out(static_cast<size_t>(len));
    for (int64_t done = 0; done < len;) {
      const int64_t k = std::min<int64_t>(1 << 20, len - done);
      Status s = sync_wait(loop(), n.pread(offset + done, out.data() + done, k));
      if (!s) return std::unexpected(s.error());
      done += k;
    }
    return out;
  }
};

}  // namespace coblk::vmdk::test
