// Where tests put their files, shared by every test binary.
//
// The base is $COBLK_TEST_TMPDIR when set, else the build tree's bin
// directory. The build tree is a real filesystem that accepts O_DIRECT (the
// file driver's default), which tmpfs did not before Linux 6.6.
// scripts/test.sh points COBLK_TEST_TMPDIR at a tmpfs when that tmpfs takes
// O_DIRECT opens: most tests wait on storage latency, not on the CPU.
#pragma once

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace coblk::testing_util {

inline std::string ScratchBase() {
  const char* dir = std::getenv("COBLK_TEST_TMPDIR");
  return dir && *dir ? dir : COBLK_BIN_DIR;
}

// A fresh directory under ScratchBase(), removed with its contents.
class ScratchDir {
 public:
  explicit ScratchDir(const std::string& prefix = "coblk-test") {
    std::string tmpl = ScratchBase() + "/" + prefix + "-XXXXXX";
    if (mkdtemp(tmpl.data())) path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace coblk::testing_util
