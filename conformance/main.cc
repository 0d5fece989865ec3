// coblk-conformance: runs the conformance battery (conformance_test.cc)
// against one driver. See kit.h.
#include <gtest/gtest.h>

#include <cstdio>

#include "conformance/kit.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const std::string err = coblk::conformance::ParseKitArgs(argc, argv);
  if (err == "help") {
    std::printf("%s", coblk::conformance::KitUsage().c_str());
    return 0;
  }
  if (!err.empty()) {
    std::fprintf(stderr, "coblk-conformance: %s\n%s", err.c_str(),
                 coblk::conformance::KitUsage().c_str());
    return 2;
  }
  return RUN_ALL_TESTS();
}
