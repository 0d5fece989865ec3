// A temporary file under the build tree (a real filesystem that supports
// O_DIRECT, unlike tmpfs), removed when the object dies.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace coblk {

class TempFile {
 public:
  explicit TempFile(size_t size = 0) {
    const char* dir = std::getenv("COBLK_TEST_TMPDIR");
    path_ = std::string(dir ? dir : COBLK_BIN_DIR) + "/coblk-test-XXXXXX";
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
