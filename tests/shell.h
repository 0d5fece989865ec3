// Running shell commands from tests, shared by every test binary: the
// qemu-img / qemu-io comparisons and the tool tests.
#pragma once

#include <stdio.h>
#include <sys/wait.h>

#include <cstdlib>
#include <string>

namespace coblk::testing_util {

// Where a command's stderr goes when its stdout is captured.
enum class Stderr { kMerged, kDropped };

// Runs cmd through /bin/sh and returns its exit status (-1 if it did not
// exit). With out, stdout (and stderr, if kMerged) is appended to *out;
// without, both are discarded.
inline int Sh(const std::string& cmd, std::string* out = nullptr,
              Stderr err = Stderr::kMerged) {
  const char* redirect = !out ? " >/dev/null 2>&1" : err == Stderr::kMerged ? " 2>&1" : " 2>/dev/null";
  FILE* p = popen((cmd + redirect).c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) {
    if (out) out->append(buf, n);
  }
  const int rc = pclose(p);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// Whether a program is on PATH (for the side-by-side qemu comparisons).
inline bool HaveProgram(const std::string& name) {
  return Sh("command -v " + name) == 0;
}

// Whether qemu-img and qemu-io both run (asked once per process).
inline bool HaveQemu() {
  static const bool have = Sh("qemu-img --version") == 0 && Sh("qemu-io --version") == 0;
  return have;
}

}  // namespace coblk::testing_util
