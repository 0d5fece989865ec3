// A temporary file under testing_util::ScratchBase() (tests/scratch_dir.h),
// removed when the object dies.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "tests/scratch_dir.h"

namespace coblk {

class TempFile {
 public:
  explicit TempFile(size_t size = 0) {
    path_ = testing_util::ScratchBase() + "/coblk-test-XXXXXX";
    int fd = mkstemp(path_.data());
    if (fd >= 0) {
      if (size && ftruncate(fd, static_cast<off_t>(size)) != 0) path_.clear();
      close(fd);
    }
  }
  ~TempFile() {
    if (!path_.empty()) unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace coblk
