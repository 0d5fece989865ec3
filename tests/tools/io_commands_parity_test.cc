// coblk-io's readv, writev, truncate, reopen, abort, sigraise, quit,
// write -s, write/read -b, aio -i, help and -U, each run beside qemu-io 7.2
// on the same image: stdout (timing figures masked), stderr (program name
// masked) and exit status compared exactly. To keep the tests fast, failing
// commands are batched: qemu-io runs every -c and exits 1 if any failed, so
// each batch checks every command's message and the common status.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "tests/tools/qemu_parity.h"

namespace coblk::testing {
namespace {

class IoCommandsParityTest : public QemuParityTest {
 protected:
  void SetUp() override {
    QemuParityTest::SetUp();
    if (IsSkipped()) return;
    // Two identical raw images and two VMDKs, one per tool, so that each
    // tool's writes land in its own copy.
    for (const char* name : {"c.raw", "q.raw"}) {
      std::ofstream(Path(name));
      std::filesystem::resize_file(Path(name), 1 << 20);
    }
    MustImg({"create", "-q", "-f", "vmdk", "q.vmdk", "1M"}, true);
    std::filesystem::copy_file(Path("q.vmdk"), Path("c.vmdk"));
    std::ofstream(Path("src.bin")) << "hello world, this is the source";
    std::ofstream(Path("empty.bin"));
  }
  // Runs cmds (each a -c) through both tools on their own copy of image:
  // `Same("raw", {...})` runs coblk-io on c.raw and qemu-io on q.raw.
  void Same(const std::string& fmt, const std::vector<std::string>& cmds,
            std::vector<std::string> pre = {}) {
    std::vector<std::string> c = pre, q = pre;
    if (fmt == "raw") {
      c.insert(c.end(), {"-f", "raw"});
      q.insert(q.end(), {"-f", "raw"});
    }
    for (const std::string& cmd : cmds) {
      c.insert(c.end(), {"-c", cmd});
      q.insert(q.end(), {"-c", cmd});
    }
    c.push_back("c." + fmt);
    q.push_back("q." + fmt);
    RunResult rc = Io(c), rq = QIo(q);
    const std::string what = Describe(c);
    EXPECT_EQ(rc.status, rq.status) << what << rc.err << rq.err;
    EXPECT_EQ(NoTimes(Machine(rc.out)), NoTimes(Machine(rq.out))) << what;
    EXPECT_EQ(Unprefix(Unprefix(rc.err, "c." + fmt), "coblk-io"),
              Unprefix(Unprefix(rq.err, "q." + fmt), "qemu-io"))
        << what;
  }
  // -C lines: "512,1,0:00:00.00,2991964.938,5843.682" (times differ).
  static std::string Machine(const std::string& s) {
    static const std::regex kLine(R"((\d+),(\d+),\d+:\d\d:\d\d\.\d\d,[0-9.]+,[0-9.]+)");
    return std::regex_replace(s, kLine, "$1,$2,TIME");
  }
};

TEST_F(IoCommandsParityTest, ReadvWritevWithSeveralLengths) {
  Same("raw", {"writev -P 0x12 0 1k 512 3", "readv -P 0x12 0 1k 512 3", "readv -v 1534 4 2",
               "readv -C 0 512", "readv -q -P 0x13 0 512", "writev -q -f 4k 512 0 512",
               "writev -C 512 512", "readv -P 0xcd 4k 1k", "writev 0 0", "readv 0 0"});
  Same("vmdk", {"writev -P 5 1000 10k 3", "readv -P 5 1000 3 10k", "readv -v 1000 2 2 1"});
}

TEST_F(IoCommandsParityTest, ReadvWritevArgumentErrors) {
  Same("raw", {"readv 0", "readv -x 0 1", "readv 0 abc", "readv abc 1", "readv 0 3G",
               "readv 0 1536M 1536M", "writev -P 300 0 1", "writev -z 0 1", "readv 2M 512",
               "writev 2M 512", "readv 0 9E", "aio_read 0 abc", "aio_write 0 3G",
               "aio_read 0", "length"});
}

TEST_F(IoCommandsParityTest, Truncate) {
  Same("raw", {"truncate 2M", "length", "truncate 1000", "length", "truncate -m full 1M",
               "length", "truncate -m falloc 3M", "length", "truncate 1M 2M 3M", "length"});
  Same("raw", {"truncate -m bogus 1M", "truncate abc", "truncate -m metadata 3M",
               "truncate -1", "truncate -- -1", "truncate -m falloc abc", "truncate -m",
               "truncate 9E", "truncate 0x10000000000000000", "truncate -m off 1M 2M",
               "length"});
  // VMDK cannot change size, even to its own size.
  Same("vmdk", {"truncate 2M", "truncate 1M", "truncate -m full 1M", "length"});
  // Read-only: refused before the arguments are looked at.
  Same("raw", {"truncate abc", "write abc 1", "writev", "discard x"}, {"-r"});
}

TEST_F(IoCommandsParityTest, Reopen) {
  Same("raw", {"write 0 1", "reopen -w", "write -q 0 1", "reopen -r", "write -q 0 1", "reopen",
               "write -q 0 1"},
       {"-r"});
  // Refused reopens leave the image as it was (writable).
  Same("raw", {"reopen -r -w", "reopen -c bogus", "reopen -o bogus=1", "reopen -o driver=vmdk",
               "reopen x", "reopen -o", "reopen -r -o read-only=off",
               "reopen -c none -o cache.direct=off", "reopen -c writeback -o locking=off",
               "write -q 0 1", "read -q -P 0xcd 0 1"});
  Same("raw", {"reopen -o driver=raw", "write -q 0 1", "reopen -o cache.direct=on",
               "write -q 0 1", "reopen -c none", "write -q 0 1", "reopen -c directsync",
               "write -q 0 1", "read -q -P 0xcd 0 1"});
  Same("vmdk", {"write -q -P 7 0 64k", "reopen -r", "write 0 1", "read -q -P 7 0 64k",
                "reopen -w", "write -q 64k 1", "map"});
  Same("raw", {"close", "reopen"});
}

TEST_F(IoCommandsParityTest, QuitAbortSigraise) {
  Same("raw", {"quit", "read 0 1"});
  Same("raw", {"read 0 2M", "q", "read 0 1"});
  Same("raw", {"quit 1 2"});
  // Fatal signals, and signals qemu-io ignores or blocks.
  for (const char* cmd : {"sigraise 15", "sigraise 9"}) Same("raw", {cmd, "read -q 0 1"});
  Same("raw", {"sigraise 10", "sigraise 13", "sigraise 14", "sigraise 0", "read -q 0 1"});
  Same("raw", {"sigraise abc", "sigraise -1", "sigraise 99", "sigraise 1k", "sigraise 1 2"});
  // abort: exit status of SIGABRT; what was written before stays written.
  // (qemu-io loses its buffered stdout on abort, coblk-io has flushed it.)
  RunResult c = Io({"-f", "raw", "-c", "write -q -P 0x5a 0 4k", "-c", "abort", "c.raw"});
  RunResult q = QIo({"-f", "raw", "-c", "write -q -P 0x5a 0 4k", "-c", "abort", "q.raw"});
  EXPECT_EQ(c.status, q.status);
  EXPECT_EQ(c.status, 128 + 6);
  Same("raw", {"read -q -P 0x5a 0 4k"});
  Same("raw", {"abort 1"});
}

TEST_F(IoCommandsParityTest, WriteFromFileAndVmState) {
  Same("raw", {"write -s src.bin 0 11", "read -v 0 16", "write -q -s src.bin 100 70",
               "read -v 100 80", "write -s src.bin 1M 1"});
  Same("raw", {"write -s nonexist 0 1", "write -s src.bin -P 1 0 1", "write -z -s src.bin 0 1",
               "write -s src.bin 0 0", "write -s empty.bin 0 1", "write -s . 0 1",
               "write 0 3G", "write -s src.bin abc 1", "read -b 0 512", "write -b 0 512",
               "write -b 1 512", "read -b 0 1", "write -b -z 0 512", "write -f -c 0 512",
               "aio_write -i", "read -q 0 1"});
  Same("raw", {"aio_read -i 0 abc", "aio_write -i 0 1", "aio_flush"});
  Same("vmdk", {"write -s src.bin 0 100", "read -v 0 112", "read -b 0 512"});
  Same("raw", {"write -s nonexist 0 1"}, {"-r"});
}

TEST_F(IoCommandsParityTest, HelpTexts) {
  std::vector<std::string> helps;
  for (const char* cmd :
       {"abort", "aio_flush", "aio_read", "aio_write", "alloc", "close", "discard", "flush",
        "help", "info", "length", "map", "quit", "read", "readv", "reopen", "sigraise",
        "sleep", "truncate", "write", "writev", "r", "w"}) {
    helps.push_back(std::string("help ") + cmd);
  }
  Same("raw", helps);
  Same("raw", {"help bogus", "help a b"});
  // The listing: qemu-io's, without the blkdebug breakpoint commands
  // coblk-io does not have, and with coblk-io's own open options.
  RunResult c = Io({"-c", "help"}), q = QIo({"-c", "help"});
  ASSERT_EQ(c.status, 0);
  ASSERT_EQ(q.status, 0);
  std::vector<std::string> expected;
  for (const std::string& l : Lines(q.out)) {
    if (l.starts_with("break ") || l.starts_with("remove_break ") || l.starts_with("resume ") ||
        l.starts_with("wait_break ")) {
      continue;
    }
    if (l.starts_with("open ")) {
      expected.push_back("open [-rCnkU] [-f fmt] [-t cache] [-i aio] [-o options] [path] -- "
                         "open the file specified by path");
      continue;
    }
    expected.push_back(l);
  }
  EXPECT_EQ(Lines(c.out), expected);
  RunResult h = Io({"-c", "help open"});
  EXPECT_EQ(h.status, 0);
  EXPECT_NE(h.out.find(" -f, -- the image format"), std::string::npos) << h.out;
  EXPECT_NE(h.out.find(" -C, -- use copy-on-read"), std::string::npos) << h.out;
}

TEST_F(IoCommandsParityTest, CopyOnRead) {
  // One chain per tool: 512 KiB of data in the base, an empty overlay.
  for (const std::string t : {"c", "q"}) {
    std::filesystem::remove(Path(t + ".vmdk"));
    MustImg({"create", "-q", "-f", "vmdk", t + "-base.vmdk", "1M"}, true);
    ASSERT_EQ(QIo({"-c", "write -q -P 7 0 512k", t + "-base.vmdk"}).status, 0);
    MustImg({"create", "-q", "-f", "vmdk", "-b", t + "-base.vmdk", "-F", "vmdk", t + ".vmdk"},
            true);
  }
  // -C: the read copies the base's data up into the overlay; map and alloc
  // then see it there.
  Same("vmdk", {"read -P 7 0 64k", "map", "alloc 0 1M", "read -q -P 7 0 512k", "map"}, {"-C"});
  EXPECT_EQ(QImg({"map", "--output=json", "c.vmdk"}).out,
            QImg({"map", "--output=json", "q.vmdk"}).out);
  Same("vmdk", {"open -C c.vmdk", "read -q -P 0 512k 64k", "map"});
  // A copy-on-read image must stay writable.
  Same("vmdk", {"read 0 4k"}, {"-r", "-C"});
  Same("vmdk", {"open -r -C x.vmdk", "open -C -r c.vmdk"});
  // (qemu-io names its node #blockNNN, coblk-io #blockN: mask the number.)
  static const std::regex kNode("#block[0-9]+");
  RunResult c = Io({"-C", "-c", "reopen -r", "-c", "write -q 0 1", "c.vmdk"});
  RunResult q = QIo({"-C", "-c", "reopen -r", "-c", "write -q 0 1", "q.vmdk"});
  EXPECT_EQ(c.status, q.status);
  EXPECT_EQ(std::regex_replace(Unprefix(c.err, "coblk-io"), kNode, "#block"),
            std::regex_replace(Unprefix(q.err, "qemu-io"), kNode, "#block"));
  // The copy-on-read filter named explicitly is refused read-only too, as
  // qemu-img refuses it (it opens every image read-only for map and info).
  const std::string json = R"(json:{"driver":"copy-on-read","file":{"driver":"vmdk",)"
                           R"("file":{"driver":"file","filename":"c.vmdk"}}})";
  ExpectSameImg({"map", "--output=json", json});
  ExpectSameImg({"info", json});
}

// qemu-io -C (and open -C): reads copy what the backing chain holds into
// the image; read-only is refused at open and at reopen.
TEST_F(IoCommandsParityTest, CopyOnReadWithWritesReopenAndRaw) {
  MustImg({"create", "-q", "-f", "vmdk", "base.vmdk", "1M"}, true);
  MustIo({"-c", "write -q -P 0x11 0 100k", "-c", "write -q -P 0x12 512k 64k", "base.vmdk"}, true);
  for (const char* top : {"q.vmdk", "c.vmdk"}) {
    std::filesystem::remove(Path(top));
    MustImg({"create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", top}, true);
  }
  Same("vmdk", {"map", "read -P 0x11 0 4k", "map", "read -P 0x11 65000 1000", "alloc 0 1M",
                "write -q -P 5 768k 4k", "read -q -P 0x12 520k 512", "map", "length",
                "reopen -c none", "read -q -P 0x12 570k 4k", "map"},
       {"-C"});
  // What the copy-ups left in each top, as qemu-img sees it.
  EXPECT_EQ(QImg({"map", "--output=json", "c.vmdk"}).out,
            QImg({"map", "--output=json", "q.vmdk"}).out);
  EXPECT_EQ(QImg({"check", "c.vmdk"}).status, 0);
  // Where coblk differs: a range no layer allocates is not copied (QEMU
  // writes its zeroes into the top).
  RunResult zero = Io({"-C", "-c", "read -q -P 0 900k 4k", "-c", "alloc 900k 4k", "c.vmdk"});
  EXPECT_EQ(zero.status, 0) << zero.err;
  EXPECT_EQ(zero.out, "0/4096 bytes allocated at offset 900 KiB\n");
  Same("vmdk", {"read -q 0 1"}, {"-C", "-r"});
  Same("raw", {"write -q -P 1 0 4k", "truncate 2M", "length", "read -q -P 1 0 4k"}, {"-C"});
  EXPECT_SAME_IO({"-c", "open -C -r c.raw"});
  EXPECT_SAME_IO({"-c", "open -C -o driver=raw c.raw", "-c", "read -q 0 1", "-c", "info"});
  // reopen -r: QEMU names the node ("#block197"); coblk's number differs.
  const std::regex node("'#block[0-9]+'");
  RunResult c = Io({"-C", "-c", "reopen -r", "-c", "write -q 0 1", "c.vmdk"});
  RunResult q = QIo({"-C", "-c", "reopen -r", "-c", "write -q 0 1", "q.vmdk"});
  EXPECT_EQ(c.status, q.status);
  EXPECT_EQ(std::regex_replace(Unprefix(c.err, "coblk-io"), node, "N"),
            std::regex_replace(Unprefix(q.err, "qemu-io"), node, "N"));
  EXPECT_EQ(c.out, q.out);
}

TEST_F(IoCommandsParityTest, ForceShareNeedsReadOnly) {
  Same("raw", {"read 0 1"}, {"-U"});
  Same("raw", {"read -q 0 1"}, {"-U", "-r"});
  EXPECT_SAME_IO({"-U", "--image-opts", "-c", "read 0 1", "driver=raw,file.filename=c.raw"});
  EXPECT_SAME_IO({"-c", "open -U c.raw"});
  EXPECT_SAME_IO({"-c", "open -U -r c.raw", "-c", "read -q 0 1"});
  EXPECT_SAME_IO({"-c", "open -o driver=raw c.raw", "-c", "read -q 0 1"});
  EXPECT_SAME_IO({"-c", "open -o driver=raw,file.filename=c.raw", "-c", "read -q 0 1"});
}

}  // namespace
}  // namespace coblk::testing
