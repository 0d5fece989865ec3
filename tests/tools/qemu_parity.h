// A fixture for running coblk-img / coblk-io beside qemu-img / qemu-io on
// the same images in a scratch directory and comparing what they print.
#pragma once

#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

#include "tests/tools/tool_runner.h"

namespace coblk::testing {

class QemuParityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveProgram("qemu-img") || !HaveProgram("qemu-io")) GTEST_SKIP() << "qemu-utils missing";
    ASSERT_FALSE(dir_.path().empty());
  }
  // The tools run in the scratch directory, so relative names match.
  RunResult Img(const std::vector<std::string>& args) {
    return RunToolIn(dir_.path(), CoblkImg(), args);
  }
  RunResult QImg(const std::vector<std::string>& args) {
    return RunToolIn(dir_.path(), "qemu-img", args);
  }
  RunResult Io(const std::vector<std::string>& args) {
    return RunToolIn(dir_.path(), CoblkIo(), args);
  }
  RunResult QIo(const std::vector<std::string>& args) {
    return RunToolIn(dir_.path(), "qemu-io", args);
  }
  // Runs the same qemu-img arguments through both tools; stderr has the
  // program name replaced so that messages compare.
  void ExpectSameImg(const std::vector<std::string>& args) {
    RunResult c = Img(args), q = QImg(args);
    EXPECT_EQ(c.status, q.status) << Describe(args) << c.err << q.err;
    EXPECT_EQ(c.out, q.out) << Describe(args);
    EXPECT_EQ(Unprefix(c.err, "coblk-img"), Unprefix(q.err, "qemu-img")) << Describe(args);
  }
  // check: coblk's VMDK check computes the figures QEMU's vmdk does not
  // (cluster statistics, image end offset; issue 13). Without those lines
  // (or JSON members) its output must be qemu-img's; the figures must be
  // there on a clean image with data.
  static std::string WithoutCheckFigures(const std::string& out) {
    static const std::regex kFigure(
        R"re(^([0-9]+/[0-9]+ = .* compressed clusters|Image end offset: [0-9]+|)re"
        R"re(    "(image-end-offset|total-clusters|allocated-clusters|fragmented-clusters|compressed-clusters)": [0-9]+,?)$)re");
    std::string kept, line;
    for (size_t p = 0; p < out.size();) {
      size_t nl = out.find('\n', p);
      if (nl == std::string::npos) nl = out.size();
      line = out.substr(p, nl - p);
      if (!std::regex_match(line, kFigure)) kept += line + (nl < out.size() ? "\n" : "");
      p = nl + 1;
    }
    // A member removed from the end leaves a comma before the brace.
    if (size_t at = kept.rfind(",\n}"); at != std::string::npos && at + 3 >= kept.size() - 1)
      kept.erase(at, 1);
    return kept;
  }
  void ExpectSameCheck(const std::vector<std::string>& args) {
    RunResult c = Img(args), q = QImg(args);
    EXPECT_EQ(c.status, q.status) << Describe(args) << c.err << q.err;
    EXPECT_EQ(WithoutCheckFigures(c.out), q.out) << Describe(args) << c.out;
  }
  static std::string Describe(const std::vector<std::string>& args) {
    std::string s;
    for (const std::string& a : args) s += a + " ";
    return s + "\n";
  }
  static std::string Unprefix(std::string s, const std::string& prog) {
    for (size_t p; (p = s.find(prog)) != std::string::npos;) s.replace(p, prog.size(), "TOOL");
    return s;
  }
  // Progress output ("    (12.50/100%)\r") for commands whose steps follow
  // each driver's block_status granularity (QEMU's vmdk answers one grain per
  // call, coblk's a whole run of same-state grains): only the first report
  // and a final 100.00 are compared, and the figures must not go back.
  // (compare -p matches qemu-img exactly and is compared with ExpectSameImg.)
  static std::string ProgressEnds(const std::string& s) {
    static const std::regex kStep(R"(    \((\d+\.\d\d)/100%\)\r)");
    std::string out;
    std::string first, last;
    double prev = -1;
    bool monotonic = true;
    size_t tail = 0;
    for (std::sregex_iterator it(s.begin(), s.end(), kStep), end; it != end; ++it) {
      const double v = std::stod((*it)[1].str());
      if (v < prev) monotonic = false;
      prev = v;
      out += s.substr(tail, static_cast<size_t>(it->position()) - tail);
      if (first.empty()) first = it->str();
      last = it->str();
      tail = static_cast<size_t>(it->position() + it->length());
    }
    if (first.empty()) return s;
    // A run that stops early (a mismatch) stops at a granularity-dependent
    // figure; a finished one ends at 100.00 in both.
    if (last.find("(100.00/100%)") == std::string::npos) last.clear();
    return (monotonic ? "" : "NOT-MONOTONIC ") + first + last + out + s.substr(tail);
  }
  void ExpectSameProgressImg(const std::vector<std::string>& args) {
    RunResult c = Img(args), q = QImg(args);
    EXPECT_EQ(c.status, q.status) << Describe(args) << c.err << q.err;
    EXPECT_EQ(ProgressEnds(c.out), ProgressEnds(q.out)) << Describe(args) << c.out << "\n" << q.out;
    EXPECT_EQ(Unprefix(c.err, "coblk-img"), Unprefix(q.err, "qemu-img")) << Describe(args);
  }
  // qemu-io's timing figures ("00.01 sec (462.882 KiB/sec and 115.7 ops/sec)").
  static std::string NoTimes(const std::string& s) {
    static const std::regex kTime(R"(\d+:?\d*\.\d+ sec \([^)]*\))");
    return std::regex_replace(s, kTime, "TIME");
  }
  std::string Path(const std::string& name) const { return dir_ / name; }

  // Runs a tool and requires success (image preparation).
  void MustImg(const std::vector<std::string>& args, bool qemu) {
    RunResult r = qemu ? QImg(args) : Img(args);
    ASSERT_EQ(r.status, 0) << Describe(args) << r.out << r.err;
  }
  void MustIo(const std::vector<std::string>& args, bool qemu) {
    RunResult r = qemu ? QIo(args) : Io(args);
    ASSERT_EQ(r.status, 0) << Describe(args) << r.out << r.err;
  }

  // A three-layer VMDK chain with layers made by both tools:
  //   base.vmdk (qemu-img, qemu-io writes) <- mid.vmdk (coblk-img, coblk-io)
  //   <- top.vmdk (qemu-img, qemu-io), each layer holding some of the data,
  // and flat.raw, a raw image with what the guest sees through top.vmdk.
  void MakeChain(const std::string& size = "8M") {
    MustImg({"create", "-q", "-f", "vmdk", "base.vmdk", size}, true);
    MustIo({"-c", "write -P 0x11 0 1M", "-c", "write -P 0x12 3M 512k", "-c", "write -P 0x13 6M 64k",
            "base.vmdk"}, true);
    MustImg({"create", "-q", "-f", "vmdk", "-b", "base.vmdk", "-F", "vmdk", "mid.vmdk"}, false);
    MustIo({"-c", "write -P 0x21 512k 1M", "-c", "write -z 3M 64k", "-c", "write -P 0x22 5M 4k",
            "mid.vmdk"}, false);
    MustImg({"create", "-q", "-f", "vmdk", "-b", "mid.vmdk", "-F", "vmdk", "top.vmdk"}, true);
    MustIo({"-c", "write -P 0x31 768k 128k", "-c", "write -P 0x32 7M 1M", "top.vmdk"}, true);
    MustImg({"convert", "-O", "raw", "top.vmdk", "flat.raw"}, true);
  }

  ScratchDir dir_;
};

// Runs the same qemu-io arguments through both tools and compares.
#define EXPECT_SAME_IO(...)                                                     \
  do {                                                                          \
    std::vector<std::string> args_ = __VA_ARGS__;                               \
    RunResult c_ = Io(args_), q_ = QIo(args_);                                  \
    EXPECT_EQ(c_.status, q_.status) << Describe(args_) << c_.err << q_.err;     \
    EXPECT_EQ(NoTimes(c_.out), NoTimes(q_.out)) << Describe(args_);             \
    EXPECT_EQ(Unprefix(c_.err, "coblk-io"), Unprefix(q_.err, "qemu-io"))        \
        << Describe(args_);                                                     \
  } while (0)

}  // namespace coblk::testing
