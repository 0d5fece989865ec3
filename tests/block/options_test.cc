#include "block/options.h"

#include <gtest/gtest.h>

namespace coblk {
namespace {

TEST(OptionsTest, ParsesKeyValuePairs) {
  auto o = Options::Parse("driver=raw,file.filename=a.img,file.cache.direct=on");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->peek("driver"), "raw");
  EXPECT_EQ(o->peek("file.filename"), "a.img");
  EXPECT_EQ(o->peek("file.cache.direct"), "on");
  EXPECT_EQ(o->values().size(), 3u);
}

// A key given twice is an error naming it, not "the last one wins".
TEST(OptionsTest, DuplicateKeysAreRejected) {
  auto o = Options::Parse("driver=raw,file.filename=a.img,file.filename=b.img");
  ASSERT_FALSE(o);
  EXPECT_EQ(o.error().errnum(), EINVAL);
  EXPECT_NE(o.error().message().find("'file.filename'"), std::string::npos) << o.error().message();
  auto flag = Options::Parse("read-only,read-only=off");
  ASSERT_FALSE(flag);
  EXPECT_NE(flag.error().message().find("'read-only'"), std::string::npos);
  auto implied = Options::Parse("a.img,filename=b.img", "filename");
  ASSERT_FALSE(implied);
  EXPECT_NE(implied.error().message().find("'filename'"), std::string::npos);

  auto j = Options::ParseJson(R"({"driver":"raw","file":{"filename":"a","filename":"b"}})");
  ASSERT_FALSE(j);
  EXPECT_NE(j.error().message().find("'filename'"), std::string::npos) << j.error().message();
  auto flat = Options::ParseJson(R"({"file":{"filename":"a"},"file.filename":"b"})");
  ASSERT_FALSE(flat);
  EXPECT_NE(flat.error().message().find("'file.filename'"), std::string::npos);
  // The same key in different objects is fine.
  auto ok = Options::ParseJson(R"({"filename":"a","file":{"filename":"b"}})");
  ASSERT_TRUE(ok) << ok.error().ToString();
  EXPECT_EQ(ok->peek("file.filename"), "b");
}

TEST(OptionsTest, DoubleCommaEscapesComma) {
  auto o = Options::Parse("filename=a,,b.img,driver=raw");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->peek("filename"), "a,b.img");
  EXPECT_EQ(o->peek("driver"), "raw");
  EXPECT_EQ(o->ToString(), "driver=raw,filename=a,,b.img");
  auto again = Options::Parse(o->ToString());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->values(), o->values());
}

TEST(OptionsTest, ImpliedKeyAndFlags) {
  auto o = Options::Parse("disk.img,driver=raw", "filename");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->peek("filename"), "disk.img");
  auto f = Options::Parse("compat6,size=1M");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->peek("compat6"), "on");
  EXPECT_FALSE(Options::Parse("=x"));
  EXPECT_EQ(Options::Parse("a=1,,")->peek("a"), "1,");
  EXPECT_FALSE(Options::Parse("a=1,,b=2,"));  // trailing empty element
  auto empty = Options::Parse("");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
}

TEST(OptionsTest, ParsesJsonFlattened) {
  auto o = Options::ParseJson(
      R"({"driver":"raw","file":{"driver":"file","filename":"x.img","cache":{"direct":true}},)"
      R"("size":1048576,"ratio":1.5,"list":["a","b"]})");
  ASSERT_TRUE(o) << o.error().ToString();
  EXPECT_EQ(o->peek("driver"), "raw");
  EXPECT_EQ(o->peek("file.driver"), "file");
  EXPECT_EQ(o->peek("file.filename"), "x.img");
  EXPECT_EQ(o->peek("file.cache.direct"), "on");
  EXPECT_EQ(o->peek("size"), "1048576");
  EXPECT_EQ(o->peek("ratio"), "1.5");
  EXPECT_EQ(o->peek("list.0"), "a");
  EXPECT_EQ(o->peek("list.1"), "b");
  EXPECT_EQ(Options::ParseJson("{bad").error().errnum(), EINVAL);
  EXPECT_EQ(Options::ParseJson("[1]").error().message(), "Invalid JSON object given");
  EXPECT_FALSE(Options::ParseJson(R"({"a":null})"));
}

TEST(OptionsTest, TypedGettersNameTheKey) {
  auto o = Options::Parse("n=12,h=0x10,neg=-3,bad=1x,b=on,b2=false,bb=maybe,s=64k,sbad=k");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->get_int("n", 0), 12);
  EXPECT_EQ(o->get_int("h", 0), 16);
  EXPECT_EQ(o->get_int("neg", 0), -3);
  EXPECT_EQ(o->get_int("absent", 42), 42);
  auto bad = o->get_int("bad", 0);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "Parameter 'bad' expects a number");
  EXPECT_EQ(bad.error().errnum(), EINVAL);
  EXPECT_EQ(o->get_bool("b", false), true);
  EXPECT_EQ(o->get_bool("b2", true), false);
  EXPECT_EQ(o->get_bool("bb", true).error().message(), "Parameter 'bb' expects 'on' or 'off'");
  EXPECT_EQ(o->get_size("s", 0), 65536u);
  EXPECT_EQ(o->get_size("sbad", 0).error().message(),
            "Parameter 'sbad' expects a non-negative number below 2^64");
  EXPECT_TRUE(o->unconsumed().empty());
}

TEST(OptionsTest, ParseSize) {
  EXPECT_EQ(ParseSize("0"), 0u);
  EXPECT_EQ(ParseSize("512"), 512u);
  EXPECT_EQ(ParseSize("1k"), 1024u);
  EXPECT_EQ(ParseSize("1K"), 1024u);
  EXPECT_EQ(ParseSize("64kB"), 65536u);
  EXPECT_EQ(ParseSize("100B"), 100u);
  EXPECT_EQ(ParseSize("2M"), 2u << 20);
  EXPECT_EQ(ParseSize("1.5G"), 3ull << 29);
  EXPECT_EQ(ParseSize("3T"), 3ull << 40);
  EXPECT_EQ(ParseSize("1P"), 1ull << 50);
  EXPECT_EQ(ParseSize("15E"), 15ull << 60);
  EXPECT_EQ(ParseSize("18446744073709551615"), UINT64_MAX);
  EXPECT_FALSE(ParseSize("16E"));
  EXPECT_FALSE(ParseSize("18446744073709551616"));
  EXPECT_FALSE(ParseSize("99999999999999999999999"));
  EXPECT_FALSE(ParseSize(""));
  EXPECT_FALSE(ParseSize("-1"));
  EXPECT_FALSE(ParseSize("1x"));
  EXPECT_FALSE(ParseSize("1.5"));
  EXPECT_FALSE(ParseSize("k"));
  EXPECT_FALSE(ParseSize("1MM"));
}

TEST(OptionsTest, ExtractPrefixAndConsumption) {
  auto o = Options::Parse("driver=vmdk,file.driver=file,file.filename=a,filex=1,backing.file.x=2");
  ASSERT_TRUE(o);
  EXPECT_TRUE(o->has_prefix("file"));
  EXPECT_TRUE(o->has_prefix("backing.file"));
  EXPECT_FALSE(o->has_prefix("fil"));
  Options file = o->extract_prefix("file");
  EXPECT_EQ(file.values().size(), 2u);
  EXPECT_EQ(file.peek("filename"), "a");
  EXPECT_FALSE(o->has_prefix("file"));
  EXPECT_TRUE(o->has("filex"));  // not under "file."
  Options backing = o->extract_prefix("backing");
  EXPECT_EQ(backing.peek("file.x"), "2");
  EXPECT_EQ(o->get_string("driver"), "vmdk");
  EXPECT_EQ(o->unconsumed(), std::vector<std::string>{"filex"});
  Status s = o->check_all_consumed("Block format 'vmdk'");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().errnum(), EINVAL);
  EXPECT_EQ(s.error().message(), "Block format 'vmdk' does not support the option 'filex'");
  EXPECT_EQ(o->take_string("filex"), "1");
  EXPECT_TRUE(o->check_all_consumed("x"));
  o->set_default("filex", "2");
  EXPECT_EQ(o->peek("filex"), "1");
}

}  // namespace
}  // namespace coblk
