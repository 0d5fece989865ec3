// info --backing-chain, map --start-offset/--max-length and check
// --output=json beside qemu-img on the same images and mixed-maker chains:
// JSON parsed and compared field by field, human output line by line.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/tools/qemu_parity.h"

namespace coblk::testing {
namespace {

class QueryTest : public QemuParityTest {
 protected:
  // Parses both tools' JSON and compares it value by value (and the text,
  // for QEMU's key order).
  void ExpectSameJson(const std::vector<std::string>& args) {
    RunResult c = Img(args), q = QImg(args);
    ASSERT_EQ(c.status, q.status) << Describe(args) << c.err << q.err;
    ASSERT_TRUE(nlohmann::json::accept(c.out)) << Describe(args) << c.out;
    ASSERT_TRUE(nlohmann::json::accept(q.out)) << Describe(args) << q.out;
    const nlohmann::json cf = nlohmann::json::parse(c.out).flatten();
    const nlohmann::json qf = nlohmann::json::parse(q.out).flatten();
    for (auto it = qf.begin(); it != qf.end(); ++it) {
      ASSERT_TRUE(cf.contains(it.key())) << Describe(args) << "missing " << it.key();
      EXPECT_EQ(cf.at(it.key()), it.value()) << Describe(args) << it.key();
    }
    EXPECT_EQ(cf.size(), qf.size()) << Describe(args) << c.out << q.out;
    EXPECT_EQ(c.out, q.out) << Describe(args);
  }
};

TEST_F(QueryTest, InfoBackingChain) {
  MakeChain();
  ExpectSameJson({"info", "--backing-chain", "--output=json", "top.vmdk"});
  ExpectSameJson({"info", "--backing-chain", "--output=json", "base.vmdk"});
  ExpectSameJson({"info", "--output=json", "mid.vmdk"});
  ExpectSameImg({"info", "--backing-chain", "top.vmdk"});
  ExpectSameImg({"info", "--backing-chain", "mid.vmdk"});
  // From another directory: names resolved relative to each image.
  ExpectSameJson({"info", "--backing-chain", "--output=json", Path("top.vmdk")});
  ExpectSameImg({"info", "--backing-chain", Path("top.vmdk")});
  ExpectSameImg({"info", "--backing-chain", "nonexist.vmdk"});
}

TEST_F(QueryTest, MapRangesThroughChain) {
  MakeChain();
  for (const char* img : {"top.vmdk", "mid.vmdk", "base.vmdk"}) {
    for (const std::vector<std::string>& range :
         {std::vector<std::string>{}, {"--start-offset=1M"}, {"--start-offset=1k"},
          {"--max-length=3M"}, {"--start-offset=512k", "--max-length=1500k"},
          {"--start-offset=100M"}, {"--start-offset=7M", "--max-length=100M"}}) {
      for (const char* out : {"--output=json", "--output=human"}) {
        std::vector<std::string> args = {"map", out};
        args.insert(args.end(), range.begin(), range.end());
        args.push_back(img);
        ExpectSameImg(args);
      }
    }
  }
  ExpectSameImg({"map", "--start-offset=x", "top.vmdk"});
  ExpectSameImg({"map", "--max-length=-5", "top.vmdk"});
  ExpectSameImg({"map", "--backing-chain", "top.vmdk"});
  ExpectSameImg({"info", "--start-offset=1", "top.vmdk"});
}

// Defect: values past INT64_MAX got the suffix hint instead of qemu-img's
// range message, hex was refused, and a start offset plus max length past
// INT64_MAX was clamped, where qemu-img's sum overflows (it prints an empty
// map even over data). coblk refuses that sum with a clear error.
TEST_F(QueryTest, MapRangeLimits) {
  ASSERT_EQ(QImg({"create", "-q", "-f", "raw", "m.img", "1M"}).status, 0);
  ASSERT_EQ(QIo({"-f", "raw", "-c", "write -P 1 0 64k", "m.img"}).status, 0);
  for (const char* opt : {"--start-offset", "--max-length"}) {
    for (const char* v : {"9223372036854775807", "9223372036854775808", "18446744073709551615",
                          "18446744073709551616", "99999999999999999999", "8E", "16E", "8.0E",
                          "7.5E", "-1", "-0", "0x10", "0X7fffffffffffffff", "0x8000000000000000",
                          "0x", "1.5k", "abc", ""}) {
      ExpectSameImg({"map", "-f", "raw", std::string(opt) + "=" + v, "m.img"});
    }
  }
  ExpectSameImg({"map", "-f", "raw", "--start-offset=9223372036854775807", "m.img"});
  ExpectSameImg({"map", "-f", "raw", "--start-offset=1k", "--max-length=9223372036854774783",
                 "m.img"});
  ExpectSameImg({"map", "-f", "raw", "--start-offset=0", "--max-length=9223372036854775807",
                 "m.img"});
  for (const std::vector<std::string>& range :
       {std::vector<std::string>{"--start-offset=1k", "--max-length=9223372036854775807"},
        {"--max-length=9223372036854775807", "--start-offset=1k"},
        {"--start-offset=9223372036854775807", "--max-length=10"},
        {"--start-offset=4E", "--max-length=4E"}}) {
    std::vector<std::string> args = {"map", "-f", "raw"};
    args.insert(args.end(), range.begin(), range.end());
    args.push_back("m.img");
    RunResult r = Img(args);
    EXPECT_EQ(r.status, 1) << Describe(args) << r.out;
    EXPECT_EQ(r.out, "") << Describe(args);
    EXPECT_EQ(r.err,
              "coblk-img: Invalid max length specified. The start offset plus the max length "
              "must not be more than 9223372036854775807.\n")
        << Describe(args);
  }
}

// Punches a hole over every 4 KiB block of the file that reads as zeroes
// (what `cp --sparse=always` leaves). Returns false where the file system
// cannot punch holes.
bool Sparsify(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR);
  if (fd < 0) return false;
  struct stat st {};
  bool ok = ::fstat(fd, &st) == 0;
  uint8_t block[4096];
  for (off_t at = 0; ok && at < st.st_size; at += sizeof block) {
    const ssize_t n = ::pread(fd, block, sizeof block, at);
    ok = n > 0;
    bool zero = ok;
    for (ssize_t i = 0; zero && i < n; ++i) zero = block[i] == 0;
    if (zero) ok = ::fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, at, n) == 0;
  }
  ::close(fd);
  return ok;
}

// Allocated grains over holes of the image file. QEMU 7.2 refines a
// driver's data answer with its file's holes only where the driver sets
// BDRV_BLOCK_RECURSE, which vmdk does for flat extents only: a sparse
// extent's grain is data even where its file has a hole (a grain written
// as zeroes then punched, a partly written grain copied with
// --sparse=always), a flat extent's hole is zero. coblk refined every
// data answer with the file's holes, so map said zero where qemu-img says
// data. Images of both makers, a chain over such a layer, raw, and the
// filters in front of or below the format.
TEST_F(QueryTest, MapGrainsOverFileHoles) {
  MustImg({"create", "-q", "-f", "vmdk", "q.vmdk", "4M"}, true);
  MustIo({"-c", "write -P 0 0 64k", "-c", "write -P 7 64k 4k", "-c", "write -P 0 1M 128k",
          "-c", "write -P 9 2M 64k", "q.vmdk"}, true);
  MustImg({"create", "-q", "-f", "vmdk", "c.vmdk", "4M"}, false);
  MustIo({"-c", "write -P 0 0 64k", "-c", "write -P 7 64k 4k", "-c", "write -P 0 1M 128k",
          "-c", "write -P 9 2M 64k", "c.vmdk"}, false);
  MustImg({"create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", "f.vmdk", "4M"}, true);
  MustIo({"-c", "write -P 5 1M 64k", "-c", "write -P 0 2M 64k", "f.vmdk"}, true);
  MustImg({"create", "-q", "-f", "raw", "r.raw", "4M"}, true);
  MustIo({"-c", "write -P 0 0 64k", "-c", "write -P 3 1M 68k", "r.raw"}, true);
  for (const char* file : {"q.vmdk", "c.vmdk", "f-flat.vmdk", "r.raw"}) {
    if (!Sparsify(Path(file))) GTEST_SKIP() << "no hole punching here";
  }
  // The grains of zeroes really lie over holes now.
  int fd = ::open(Path("q.vmdk").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  struct stat st {};
  ASSERT_EQ(::fstat(fd, &st), 0);
  const off_t hole = ::lseek(fd, 0x10000, SEEK_HOLE);  // where the header ends
  ::close(fd);
  ASSERT_LT(hole, st.st_size) << "no hole in the image file";
  MustImg({"create", "-q", "-f", "vmdk", "-b", "q.vmdk", "-F", "vmdk", "top.vmdk"}, false);
  MustIo({"-c", "write -P 8 64k 64k", "top.vmdk"}, false);

  for (const char* img : {"q.vmdk", "c.vmdk", "f.vmdk", "r.raw", "top.vmdk"}) {
    ExpectSameJson({"map", "--output=json", img});
    ExpectSameImg({"map", img});
  }
  ExpectSameJson({"map", "--output=json", "-f", "raw", "q.vmdk"});
  ExpectSameJson({"map", "--output=json", "--start-offset=68k", "--max-length=1M", "c.vmdk"});
  for (const char* opts :
       {"driver=vmdk,file.driver=blkdebug,file.image.driver=file,file.image.filename=q.vmdk",
        "driver=blkdebug,image.driver=vmdk,image.file.driver=file,image.file.filename=c.vmdk",
        "driver=raw,file.driver=vmdk,file.file.driver=file,file.file.filename=q.vmdk",
        "driver=blkdebug,image.driver=vmdk,image.file.driver=file,image.file.filename=f.vmdk"}) {
    ExpectSameJson({"map", "--output=json", "--image-opts", opts});
  }
}

// A file whose size is not a multiple of 512: qemu-img map reads through
// the page cache (it has no -T), where the file's request alignment is 1,
// so the data ends at the file's last byte and the rest of the last sector
// is a zero range. coblk-img map opened the file with O_DIRECT (alignment
// 512 or 4096) and reported the whole last sector as data.
TEST_F(QueryTest, MapOddSizedFile) {
  for (const char* name : {"odd.raw", "tail.raw", "tiny.raw"}) {
    const int fd = ::open(Path(name).c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
    ASSERT_GE(fd, 0);
    const std::string data(std::string(name) == "tiny.raw" ? 700 : 5000, 'x');
    const off_t at = std::string(name) == "tail.raw" ? 95000 : 0;
    ASSERT_EQ(::pwrite(fd, data.data(), data.size(), at), static_cast<ssize_t>(data.size()));
    if (std::string(name) == "odd.raw") {
      ASSERT_EQ(::ftruncate(fd, 100000), 0);
    }
    ::close(fd);
  }
  for (const char* img : {"odd.raw", "tail.raw", "tiny.raw"}) {
    ExpectSameJson({"map", "--output=json", "-f", "raw", img});
    ExpectSameImg({"map", "-f", "raw", img});
    ExpectSameJson({"map", "--output=json", "-f", "raw", "--start-offset=4k", img});
  }
}

// Names in JSON output come from image files (extent names, backing
// hints, file names) and may hold any bytes. QEMU's JSON writer reads them
// as modified UTF-8: each invalid sequence (and each noncharacter,
// surrogate or overlong form) is U+FFFD, and every code point outside
// 0x20..0x7E is a \uXXXX escape with upper-case hex. coblk-img printed
// UTF-8 as it was and aborted (an uncaught nlohmann exception) on bytes
// that are not UTF-8.
TEST_F(QueryTest, JsonNamesEscapedAsQemu) {
  const std::vector<std::string> names = {
      "\xff\xfe" "b",       "\xc3\xbc.img",     "\xf0\x9f\x98\x80.img", "del\x7f.img",
      "\xef\xbf\xbe.img",   "\xc1\xbf.img",     "\xe2\x82.img",         "\xc0\x80.img",
      "\xed\xa0\x80.img",   "tab\tq\"b\\s.img", "\xe2\x82\xac.img",     "x\x80y.img"};
  for (size_t n = 0; n < names.size(); ++n) {
    SCOPED_TRACE(n);
    const int fd = ::open(Path(names[n]).c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
    ASSERT_GE(fd, 0) << ::strerror(errno);
    ASSERT_EQ(::ftruncate(fd, 1 << 20), 0);
    ::close(fd);
    std::string desc =
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n"
        "createType=\"monolithicFlat\"\n\n# Extent description\nRW 2048 FLAT \"" +
        names[n] + "\" 0\n\nddb.adapterType = \"ide\"\n";
    const int dfd = ::open(Path("d.vmdk").c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
    ASSERT_GE(dfd, 0);
    ASSERT_EQ(::write(dfd, desc.data(), desc.size()), static_cast<ssize_t>(desc.size()));
    ::close(dfd);
    if (names[n].find('"') == std::string::npos) ExpectSameJson({"info", "--output=json", "d.vmdk"});
    ExpectSameJson({"info", "--output=json", "-f", "raw", names[n]});
    MustImg({"create", "-q", "-f", "vmdk", names[n] + ".vmdk", "1M"}, true);
    ExpectSameCheck({"check", "--output=json", names[n] + ".vmdk"});
  }
}

TEST_F(QueryTest, CheckJson) {
  MakeChain();
  MustImg({"create", "-q", "-f", "vmdk", "-o", "subformat=streamOptimized", "s.vmdk", "4M"}, false);
  MustIo({"-c", "write -P 1 0 1M", "s.vmdk"}, false);
  for (const char* img : {"top.vmdk", "mid.vmdk", "base.vmdk", "s.vmdk"}) {
    // coblk adds the cluster figures and image end offset (issue 13).
    ExpectSameCheck({"check", "--output=json", img});
    ExpectSameImg({"check", "-q", "--output=json", img});
    ExpectSameCheck({"check", img});
  }
  ExpectSameImg({"check", "-f", "raw", "--output=json", "flat.raw"});  // 63, not supported
  ExpectSameImg({"check", "--output=xml", "top.vmdk"});
  ExpectSameImg({"check", "-r", "bogus", "top.vmdk"});
  ExpectSameImg({"check", "-z", "top.vmdk"});
  ExpectSameImg({"check"});
}

// A grain-table entry past the end of the file: qemu-img 7.2 stops with
// "Check failed: Invalid argument"; coblk counts the corruption (and the
// grain the entry named before, now leaked), and its JSON has QEMU's field
// names and order.
TEST_F(QueryTest, CheckJsonCorruption) {
  MustImg({"create", "-q", "-f", "vmdk", "e.vmdk", "10M"}, true);
  MustIo({"-c", "write 0 64k", "e.vmdk"}, true);
  int fd = ::open(Path("e.vmdk").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint8_t header[512];
  ASSERT_EQ(::pread(fd, header, sizeof header, 0), 512);
  for (int field : {48, 56}) {  // rgd_offset, gd_offset (sectors)
    uint64_t gd = 0;
    uint32_t gt = 0;
    std::memcpy(&gd, header + field, 8);
    ASSERT_EQ(::pread(fd, &gt, 4, static_cast<off_t>(gd * 512)), 4);
    const uint32_t past_end = 0x100000;
    ASSERT_EQ(::pwrite(fd, &past_end, 4, static_cast<off_t>(uint64_t{gt} * 512)), 4);
  }
  ::close(fd);
  RunResult r = Img({"check", "--output=json", "e.vmdk"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_EQ(r.out,
            "{\n    \"image-end-offset\": 15872,\n    \"corruptions\": 1,\n"
            "    \"check-errors\": 0,\n    \"leaks\": 1,\n"
            "    \"filename\": \"e.vmdk\",\n    \"format\": \"vmdk\"\n}\n");
}

}  // namespace
}  // namespace coblk::testing
