// Write-side guards and semantics: hostile grain directories / tables are
// refused without touching metadata, read-only extent kinds, streamOptimized
// overwrites, the CID update, write_zeroes with and without zeroed grains,
// and concurrent allocating writes.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "coroutine/when_all.h"
#include "tests/drivers/vmdk/vmdk_write_util.h"

namespace coblk::vmdk::test {
namespace {

constexpr int64_t kGrain = 65536;
constexpr uint64_t kDescBegin = 512, kDescEnd = 21 * 512;  // embedded descriptor area

class WriteGuard : public VmdkWriteTest {
 protected:
  // A 64 MiB monolithicSparse image (2 grain tables); by coblk or qemu-img.
  void MakeSparse(bool by_qemu, bool zeroed_grain = false) {
    if (by_qemu) {
      ASSERT_EQ(Sh(std::string("qemu-img create -f vmdk ") +
                   (zeroed_grain ? "-o zeroed_grain=on " : "") + img_ + " 64M"),
                0);
    } else {
      Status st = Create(img_, std::string("size=64M") + (zeroed_grain ? ",zeroed_grain=on" : ""));
      ASSERT_TRUE(st) << st.error().ToString();
    }
    Bytes f = ReadFile(img_);
    gd_ = LoadLe64(f, 56) * 512;
    rgd_ = LoadLe64(f, 48) * 512;
  }
  uint64_t GtOffset(int l1) {
    Bytes f = ReadFile(img_);
    return uint64_t{LoadLe32(f, gd_ + l1 * 4)} * 512;
  }
  void SetGte(int l1, int l2, uint32_t v) {
    for (uint64_t dir : {gd_, rgd_}) {
      Bytes f = ReadFile(img_);
      const uint64_t gt = uint64_t{LoadLe32(f, dir + l1 * 4)} * 512;
      Bytes b(4);
      StoreLe32(b, 0, v);
      ASSERT_TRUE(testing_util::WriteHostFile(img_, static_cast<off_t>(gt + l2 * 4), b));
    }
  }
  // Every byte outside the embedded descriptor (whose CID a write may
  // update first, as QEMU does) is unchanged.
  void ExpectUnchangedExceptCid(const Bytes& before) {
    Bytes after = ReadFile(img_);
    ASSERT_EQ(after.size(), before.size()) << "the file grew";
    for (size_t i = 0; i < after.size(); ++i) {
      if (i >= kDescBegin && i < kDescEnd) continue;
      ASSERT_EQ(after[i], before[i]) << "byte " << i << " changed";
    }
  }
  // A refused write: error with errnum / message, metadata untouched.
  void ExpectRefused(int64_t offset, int errnum, const std::string& msg_part) {
    const Bytes before = ReadFile(img_);
    {
      auto node = OpenRw(img_);
      ASSERT_TRUE(node) << node.error().ToString();
      Status st = Write(**node, offset, Bytes(4096, 0xab));
      ASSERT_FALSE(st) << "write at " << offset << " was not refused";
      EXPECT_EQ(st.error().errnum(), errnum) << st.error().ToString();
      EXPECT_NE(st.error().message().find(msg_part), std::string::npos) << st.error().ToString();
      Close(*node);
    }
    ExpectUnchangedExceptCid(before);
  }

  ScratchDir dir_;
  std::string img_ = dir_ / "img.vmdk";
  uint64_t gd_ = 0, rgd_ = 0;
};

TEST_F(WriteGuard, ZeroGrainDirectoryEntryIsRefused) {
  for (bool by_qemu : {false, true}) {
    if (by_qemu && !HaveQemu()) continue;
    SCOPED_TRACE(by_qemu ? "qemu-img image" : "coblk image");
    MakeSparse(by_qemu);
    // GD entry 1 (guest 32..64 MiB) -> 0 in both directories.
    Bytes zero4(4, 0);
    ASSERT_TRUE(testing_util::WriteHostFile(img_, static_cast<off_t>(gd_ + 4), zero4));
    ASSERT_TRUE(testing_util::WriteHostFile(img_, static_cast<off_t>(rgd_ + 4), zero4));
    // (QEMU 7.2 allocates at sector 0 here and writes guest data over the header.)
    ExpectRefused(40 * kMiB_ + 512, EIO, "has no grain table");
    // Write zeroes is checked before anything changes too.
    const Bytes before = ReadFile(img_);
    auto node = OpenRw(img_);
    ASSERT_TRUE(node);
    EXPECT_FALSE(sync_wait(loop(), (*node)->pwrite_zeroes(32 * kMiB_, kGrain, 0)));
    // Table 0 still works.
    EXPECT_TRUE(Write(**node, 4096, Bytes(512, 7)));
    Close(*node);
    Bytes after = ReadFile(img_);
    EXPECT_TRUE(std::equal(before.begin(), before.begin() + 512, after.begin()));
  }
}

TEST_F(WriteGuard, HostileGrainTableEntriesAreRefused) {
  MakeSparse(false);
  const Bytes pristine = ReadFile(img_);
  const uint64_t file_sectors = pristine.size() / 512;
  struct Target {
    const char* what;
    uint32_t gte;
    const char* msg;
  } targets[] = {
      {"header", 0 + 2, "overlaps VMDK metadata"},  // sector 2: descriptor area
      {"redundant GD", static_cast<uint32_t>(rgd_ / 512), "overlaps VMDK metadata"},
      {"grain table", static_cast<uint32_t>(GtOffset(0) / 512), "overlaps VMDK metadata"},
      {"last grain table", static_cast<uint32_t>(GtOffset(1) / 512 + 3), "overlaps VMDK metadata"},
      {"past EOF", static_cast<uint32_t>(file_sectors + 1000), "past the end"},
      {"straddling EOF", static_cast<uint32_t>(file_sectors - 1), "past the end"},
  };
  for (const auto& t : targets) {
    SCOPED_TRACE(t.what);
    ASSERT_TRUE(WriteFile(img_, pristine));
    SetGte(0, 3, t.gte);
    ExpectRefused(3 * kGrain + 100, EIO, t.msg);
  }
}

// VMDK3 is written as QEMU writes it (sesparse_vmdk3_image_test.cc).
TEST_F(WriteGuard, SeSparseIsNotWritable) {
  const std::string desc = dir_ / "d.vmdk", ext = dir_ / "d-delta.vmdk";
  BuiltImage se = BuildSeSparse(40 * 2048, {{0, GrainKind::kData, 3}});
  ASSERT_TRUE(WriteFile(ext, se.file));
  ASSERT_TRUE(WriteFile(desc, SimpleDescriptor("seSparse", {"RW 81920 SESPARSE \"d-delta.vmdk\""})));
  auto node = OpenRw(desc);
  ASSERT_FALSE(node);
  EXPECT_EQ(node.error().message(), "No write support for seSparse images available");
}

TEST_F(WriteGuard, ReadOnlyExtentIsEacces) {
  Status st = Create(img_, "size=4M,subformat=monolithicFlat");
  ASSERT_TRUE(st) << st.error().ToString();
  std::string d = Descriptor(img_);
  const size_t p = d.find("RW ");
  ASSERT_NE(p, std::string::npos);
  d.replace(p, 3, "RDONLY ");
  ASSERT_TRUE(WriteFile(img_, d));
  auto node = OpenRw(img_);
  ASSERT_TRUE(node) << node.error().ToString();
  st = Write(**node, 0, Bytes(512, 1));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().errnum(), EACCES) << st.error().ToString();
  auto r = Read(**node, 0, 512);
  ASSERT_TRUE(r);
  EXPECT_EQ((*r)[0], 0);
}

TEST_F(WriteGuard, StreamOptimizedOverwriteIsEio) {
  Status st = Create(img_, "size=8M,subformat=streamOptimized");
  ASSERT_TRUE(st) << st.error().ToString();
  auto node = OpenRw(img_);
  ASSERT_TRUE(node) << node.error().ToString();
  ASSERT_TRUE(Write(**node, kGrain, Bytes(kGrain, 5)));
  st = Write(**node, kGrain + 512, Bytes(512, 6));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().errnum(), EIO);
  EXPECT_EQ(st.error().message(), "Could not write to allocated cluster for streamOptimized");
  // A fresh grain still works, and the old one is intact.
  EXPECT_TRUE(Write(**node, 3 * kGrain, Bytes(512, 7)));
  auto r = Read(**node, kGrain, kGrain);
  ASSERT_TRUE(r);
  EXPECT_TRUE(*r == Bytes(kGrain, 5));
  Close(*node);
  // Also after reopening (the grain is found through the on-disk tables).
  node = OpenRw(img_);
  ASSERT_TRUE(node) << node.error().ToString();
  st = Write(**node, kGrain, Bytes(512, 6));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "Could not write to allocated cluster for streamOptimized");
  Close(*node);
  if (HaveQemu()) ExpectQemuCheckClean(img_);
}

// ---------------------------------------------------------------------------
// CID

TEST_F(WriteGuard, FirstWritePerOpenChangesCidOnce) {
  ASSERT_TRUE(Create(img_, "size=16M"));
  const std::string cid0 = DescValue(Descriptor(img_), "CID");
  ASSERT_FALSE(cid0.empty());
  auto node = OpenRw(img_);
  ASSERT_TRUE(node);
  EXPECT_EQ(DescValue(Descriptor(img_), "CID"), cid0) << "opening alone changed the CID";
  ASSERT_TRUE(Write(**node, 0, Bytes(512, 1)));
  const std::string cid1 = DescValue(Descriptor(img_), "CID");
  EXPECT_NE(cid1, cid0);
  ASSERT_TRUE(Write(**node, kGrain * 7, Bytes(512, 2)));
  ASSERT_TRUE(sync_wait(loop(), (*node)->pwrite_zeroes(0, 4096, 0)));
  EXPECT_EQ(DescValue(Descriptor(img_), "CID"), cid1);
  Close(*node);
  EXPECT_EQ(DescValue(Descriptor(img_), "CID"), cid1);
  node = OpenRw(img_);
  ASSERT_TRUE(node);
  ASSERT_TRUE(Write(**node, 0, Bytes(512, 3)));
  const std::string cid2 = DescValue(Descriptor(img_), "CID");
  EXPECT_NE(cid2, cid1);
  Close(*node);
  if (HaveQemu()) ExpectQemuCheckClean(img_);
}

TEST_F(WriteGuard, OverlayParentCidAndStaleParent) {
  const std::string base = dir_ / "base.vmdk", top = dir_ / "top.vmdk";
  ASSERT_TRUE(Create(base, "size=8M"));
  {
    auto b = OpenRw(base);
    ASSERT_TRUE(b);
    ASSERT_TRUE(Write(**b, 0, Bytes(2 * kGrain, 0x5a)));
    Close(*b);
  }
  Status st = Create(top, "size=8M,backing_file=base.vmdk");
  ASSERT_TRUE(st) << st.error().ToString();
  EXPECT_EQ(DescValue(Descriptor(top), "parentCID"), DescValue(Descriptor(base), "CID"));
  EXPECT_EQ(DescValue(Descriptor(top), "parentFileNameHint"), "base.vmdk");
  {
    // Copy-on-write through the overlay: a partial grain write merges the base.
    auto t = OpenRw(top);
    ASSERT_TRUE(t) << t.error().ToString();
    ASSERT_TRUE(Write(**t, 100, Bytes(100, 0x11)));
    Bytes want(kGrain, 0x5a);
    std::fill_n(want.begin() + 100, 100, 0x11);
    auto r = Read(**t, 0, kGrain);
    ASSERT_TRUE(r);
    EXPECT_TRUE(*r == want);
    Close(*t);
  }
  if (HaveQemu()) {
    std::string out;
    EXPECT_EQ(ShOut("qemu-io -r -f vmdk -c 'read -P 0x11 100 100' -c 'read -P 0x5a 200 65336' "
                 "-c 'read -P 0x5a 65536 65536' " + top, &out), 0) << out;
    EXPECT_EQ(out.find("verification failed"), std::string::npos) << out;
    ExpectQemuCheckClean(top);
  }
  // Writing the base changes its CID: the overlay's unallocated data is now
  // unreadable (the parent is no longer the one it was made from).
  {
    auto b = OpenRw(base);
    ASSERT_TRUE(b);
    ASSERT_TRUE(Write(**b, 4 * kGrain, Bytes(512, 1)));
    Close(*b);
  }
  auto t = OpenVmdk(top);
  ASSERT_TRUE(t) << t.error().ToString();
  EXPECT_TRUE(Read(**t, 0, 512)) << "allocated data stays readable";
  auto r = Read(**t, kGrain, 512);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("Parent CID"), std::string::npos) << r.error().ToString();
  if (HaveQemu()) {
    std::string out;
    ShOut("qemu-io -r -f vmdk -c 'read 65536 512' " + top, &out);
    EXPECT_EQ(out.find("read 512/512"), std::string::npos) << "qemu read it: " << out;
  }
}

TEST_F(WriteGuard, LargeDescriptorSurvivesCidUpdate) {
  ASSERT_TRUE(Create(img_, "size=4M,subformat=monolithicFlat"));
  std::string d = Descriptor(img_);
  for (int i = 0; i < 400; ++i)
    d += "ddb.comment" + std::to_string(i) + " = \"" + std::string(40, 'a' + i % 26) + "\"\n";
  ASSERT_GT(d.size(), 20000u);
  ASSERT_TRUE(WriteFile(img_, d));
  {
    auto node = OpenRw(img_);
    ASSERT_TRUE(node) << node.error().ToString();
    ASSERT_TRUE(Write(**node, 0, Bytes(4096, 9)));
    Close(*node);
  }
  std::string after = Descriptor(img_);
  const std::string old_cid = DescValue(d, "CID"), new_cid = DescValue(after, "CID");
  EXPECT_NE(old_cid, new_cid);
  const size_t p = d.find("\nCID=" + old_cid + "\n");
  ASSERT_NE(p, std::string::npos);
  d.replace(p + 5, old_cid.size(), new_cid);  // (QEMU prints the CID with %x: width varies)
  EXPECT_EQ(after.size(), d.size());
  EXPECT_TRUE(after == d) << "descriptor changed beyond its CID";
  EXPECT_EQ(ReadFile(img_).size(), (d.size() + 1 + 511) / 512 * 512) << "whole sectors, as QEMU";
  if (HaveQemu()) {
    std::string out;
    EXPECT_EQ(ShOut("qemu-io -r -f vmdk -c 'read -P 9 0 4096' " + img_, &out), 0) << out;
    EXPECT_EQ(out.find("verification failed"), std::string::npos) << out;
  }
}

// ---------------------------------------------------------------------------
// write_zeroes

TEST_F(WriteGuard, WriteZeroesWithZeroedGrain) {
  MakeSparse(false, /*zeroed_grain=*/true);
  auto node = OpenRw(img_);
  ASSERT_TRUE(node);
  ASSERT_TRUE(Write(**node, 0, Bytes(4 * kGrain, 0x77)));
  // Whole grains, allocated and not, become zeroed-grain entries.
  ASSERT_TRUE(sync_wait(loop(), (*node)->pwrite_zeroes(kGrain, 2 * kGrain, kReqMayUnmap)));
  ASSERT_TRUE(sync_wait(loop(), (*node)->pwrite_zeroes(10 * kGrain, 3 * kGrain, kReqNoFallback)));
  // Partial grains: written as data (head and tail), middle zeroed.
  ASSERT_TRUE(sync_wait(loop(), (*node)->pwrite_zeroes(20 * kGrain + 1000, 2 * kGrain, 0)));
  Bytes want(40 * kGrain, 0);
  std::fill_n(want.begin(), kGrain, 0x77);
  std::fill_n(want.begin() + 3 * kGrain, kGrain, 0x77);
  auto r = ReadRange(**node, 0, 40 * kGrain);
  ASSERT_TRUE(r);
  EXPECT_TRUE(*r == want);
  auto s = GetStatus(**node, kGrain, 2 * kGrain);
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->status & kStatusZero);
  EXPECT_FALSE(s->status & kStatusData);
  Close(*node);
  Bytes f = ReadFile(img_);
  const uint64_t gt = GtOffset(0);
  EXPECT_EQ(LoadLe32(f, gt + 1 * 4), 1u);
  EXPECT_EQ(LoadLe32(f, gt + 2 * 4), 1u);
  EXPECT_EQ(LoadLe32(f, gt + 11 * 4), 1u);
  EXPECT_EQ(LoadLe32(f, gt + 21 * 4), 1u);
  EXPECT_GT(LoadLe32(f, gt + 20 * 4), 1u);
  EXPECT_GT(LoadLe32(f, gt + 22 * 4), 1u);
  if (HaveQemu()) {
    ExpectQemuCheckClean(img_);
    std::string map;
    ASSERT_EQ(Sh("qemu-img map -f vmdk --output=json " + img_, &map), 0);
    bool found = false;
    for (const auto& e : nlohmann::json::parse(map))
      if (e["start"] == kGrain) {
        found = true;
        EXPECT_TRUE(e["zero"].get<bool>()) << map;
        EXPECT_FALSE(e["data"].get<bool>()) << map;
        EXPECT_EQ(e["length"].get<int64_t>(), 2 * kGrain) << map;
      }
    EXPECT_TRUE(found) << map;
    std::string out;
    ShOut("qemu-io -r -f vmdk -c 'read -P 0 65536 131072' -c 'read -P 0x77 196608 65536' -c "
       "'read -P 0 655360 196608' " + img_, &out);
    EXPECT_EQ(out.find("verification failed"), std::string::npos) << out;
  }
}

TEST_F(WriteGuard, WriteZeroesWithoutZeroedGrain) {
  MakeSparse(false, /*zeroed_grain=*/false);
  auto node = OpenRw(img_);
  ASSERT_TRUE(node);
  ASSERT_TRUE(Write(**node, 0, Bytes(2 * kGrain, 0x77)));
  Status st = sync_wait(loop(), (*node)->pwrite_zeroes(0, kGrain, kReqNoFallback));
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().errnum(), ENOTSUP) << st.error().ToString();
  // MAY_UNMAP is accepted and falls back to writing zeroes.
  ASSERT_TRUE(sync_wait(loop(), (*node)->pwrite_zeroes(0, kGrain, kReqMayUnmap)));
  auto r = ReadRange(**node, 0, 2 * kGrain);
  ASSERT_TRUE(r);
  Bytes want(2 * kGrain, 0x77);
  std::fill_n(want.begin(), kGrain, 0);
  EXPECT_TRUE(*r == want);
  Close(*node);
  if (HaveQemu()) ExpectQemuCheckClean(img_);
}

// ---------------------------------------------------------------------------
// Concurrency

class ConcurrentWrite : public WriteGuard {};

TEST_F(ConcurrentWrite, SameGrainAndSameTable) {
  MakeSparse(false);
  const int64_t size0 = testing_util::HostFileSize(img_);
  auto node = OpenRw(img_);
  ASSERT_TRUE(node);
  BlockNode& n = **node;
  Shadow shadow;
  std::vector<Bytes> bufs;
  std::vector<Task<Status>> tasks;
  auto add = [&](int64_t off, int64_t len, uint8_t seed) {
    bufs.push_back(testing_util::Pattern(static_cast<size_t>(len), seed));
    shadow.Apply(off, bufs.back());
  };
  // 64 writers into one unallocated grain (5), 1 KiB each, different bytes.
  for (int i = 0; i < 64; ++i) add(5 * kGrain + i * 1024, 1024, static_cast<uint8_t>(i));
  // 16 writers each into grain 6 (unaligned pieces, 4000 bytes apart).
  for (int i = 0; i < 16; ++i) add(6 * kGrain + i * 4000 + 17, 3000, static_cast<uint8_t>(100 + i));
  // One write into every other grain of table 0 and a few of table 1.
  for (int g = 7; g < 512; ++g) add(g * kGrain + (g % 7) * 512, 4096, static_cast<uint8_t>(g));
  for (int g = 512; g < 540; ++g) add(g * kGrain, kGrain, static_cast<uint8_t>(g));
  bufs.shrink_to_fit();
  size_t k = 0;
  auto issue = [&](int64_t off) {
    tasks.push_back(n.pwrite(off, bufs[k].data(), static_cast<int64_t>(bufs[k].size())));
    ++k;
  };
  for (int i = 0; i < 64; ++i) issue(5 * kGrain + i * 1024);
  for (int i = 0; i < 16; ++i) issue(6 * kGrain + i * 4000 + 17);
  for (int g = 7; g < 512; ++g) issue(g * kGrain + (g % 7) * 512);
  for (int g = 512; g < 540; ++g) issue(g * kGrain);
  auto results = sync_wait(loop(), when_all(std::move(tasks)));
  for (auto& st : results) ASSERT_TRUE(st) << st.error().ToString();
  ExpectContent(n, shadow);
  Close(*node);
  // Exactly one grain per written grain (2 + 505 + 28): counted in the
  // tables below (the file itself may be preallocated ahead).
  EXPECT_GE(testing_util::HostFileSize(img_), size0 + (2 + 505 + 28) * kGrain);
  auto ro = OpenVmdk(img_);
  ASSERT_TRUE(ro);
  ExpectContent(**ro, shadow);
  auto chk = sync_wait(loop(), (*ro)->check(false));
  ASSERT_TRUE(chk);
  EXPECT_EQ(chk->corruptions, 0);
  EXPECT_EQ(chk->allocated_clusters, 2 + 505 + 28);
  // No two entries share a grain.
  Bytes f = ReadFile(img_);
  std::set<uint32_t> seen;
  for (int l1 = 0; l1 < 2; ++l1)
    for (uint64_t gt = uint64_t{LoadLe32(f, gd_ + l1 * 4)} * 512, l2 = 0; l2 < 512; ++l2) {
      uint32_t v = LoadLe32(f, gt + l2 * 4);
      if (v > 1) {
        EXPECT_TRUE(seen.insert(v).second) << "grain at sector " << v << " used twice";
      }
    }
  if (HaveQemu()) ExpectQemuCheckClean(img_);
}

// A request over many grains writes them at once, but they take their
// space in the file in offset order.
TEST_F(ConcurrentWrite, MultiGrainRequestsAllocateInOffsetOrder) {
  MakeSparse(false);
  auto node = OpenRw(img_);
  ASSERT_TRUE(node);
  BlockNode& n = **node;
  Shadow shadow;
  // Two concurrent requests of ~40 grains each, unaligned at both ends.
  const int64_t a = 3 * kGrain + 700, b = 300 * kGrain + 1234, len = 40 * kGrain + 999;
  Bytes da = testing_util::Pattern(static_cast<size_t>(len), 1);
  Bytes db = testing_util::Pattern(static_cast<size_t>(len), 2);
  shadow.Apply(a, da);
  shadow.Apply(b, db);
  std::vector<Task<Status>> tasks;
  tasks.push_back(n.pwrite(a, da.data(), len));
  tasks.push_back(n.pwrite(b, db.data(), len));
  for (auto& st : sync_wait(loop(), when_all(std::move(tasks)))) ASSERT_TRUE(st) << st.error().ToString();
  ExpectContent(n, shadow);
  for (int64_t start : {a, b}) {
    int64_t previous = -1;
    for (int64_t g = start / kGrain; g <= (start + len - 1) / kGrain; ++g) {
      auto st = GetStatus(n, g * kGrain, kGrain);
      ASSERT_TRUE(st) << st.error().ToString();
      ASSERT_TRUE(st->status & kStatusOffsetValid) << "grain " << g;
      EXPECT_GT(st->map, previous) << "grain " << g << " lies before the grain ahead of it";
      previous = st->map;
    }
  }
  Close(*node);
  if (HaveQemu()) ExpectQemuCheckClean(img_);
}

// The same for a stream: one compressed request over many grains leaves
// its grain markers in LBA order, as a stream reader expects.
TEST_F(ConcurrentWrite, StreamGrainsStayInLbaOrder) {
  ASSERT_TRUE(Create(img_, "size=64M,subformat=streamOptimized"));
  auto node = OpenRw(img_);
  ASSERT_TRUE(node);
  constexpr int kGrains = 48;
  Bytes data = testing_util::Pattern(kGrains * kGrain, 7);
  IoVector v(data.data(), data.size());
  Status st = sync_wait(loop(), (*node)->pwritev_compressed(kGrain, kGrains * kGrain, v));
  ASSERT_TRUE(st) << st.error().ToString();
  Close(*node);

  Bytes f = ReadFile(img_);
  auto header = Vmdk4Header::Decode(std::span<const uint8_t>(f).subspan(0, 512));
  ASSERT_TRUE(header);
  std::vector<uint64_t> lbas;
  for (uint64_t at = header->grain_offset * 512; at + 512 <= f.size();) {
    auto m = GrainMarker::Decode(std::span<const uint8_t>(f).subspan(at, 512));
    ASSERT_TRUE(m);
    if (m->is_metadata()) {
      // A stream reader skips metadata (the first open leaves the empty
      // directory it started from in front of the grains) up to the end.
      if (m->type == static_cast<uint32_t>(MarkerType::kEndOfStream)) break;
      at += 512 + m->lba * 512;
      continue;
    }
    lbas.push_back(m->lba);
    at += (GrainMarker::kGrainHeaderSize + m->size + 511) / 512 * 512;
  }
  ASSERT_EQ(lbas.size(), static_cast<size_t>(kGrains));
  for (size_t i = 0; i < lbas.size(); ++i) EXPECT_EQ(lbas[i], (i + 1) * kGrain / 512);
  auto ro = OpenVmdk(img_);
  ASSERT_TRUE(ro);
  auto back = Read(**ro, kGrain, data.size());
  ASSERT_TRUE(back);
  EXPECT_TRUE(*back == data);
  Close(*ro);
  if (HaveQemu()) ExpectQemuCheckClean(img_);
}

}  // namespace
}  // namespace coblk::vmdk::test
