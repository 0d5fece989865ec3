// info --backing-chain, map --start-offset/--max-length and check
// --output=json beside qemu-img on the same images and mixed-maker chains:
// JSON parsed and compared field by field, human output line by line.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace coblk::testing
