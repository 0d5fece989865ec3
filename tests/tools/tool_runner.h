// Runs a command line through the shell, capturing stdout, stderr and the
// exit status, for tests of the coblk-io / coblk-img binaries.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <sstream>
#include <string>
#include <vector>

#include "tests/io/temp_file.h"
#include "tests/scratch_dir.h"
#include "tests/shell.h"

namespace coblk::testing {

struct RunResult {
  int status = -1;
  std::string out;
  std::string err;
};

// Single-quotes s for /bin/sh.
inline std::string ShellQuote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') {
      q += "'\\''";
    } else {
      q += c;
    }
  }
  return q + "'";
}

inline std::string ReadAll(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs program with args; with dir non-empty, in that working directory.
inline RunResult RunToolIn(const std::string& dir, const std::string& program,
                           const std::vector<std::string>& args) {
  TempFile out, err;
  std::string cmd = dir.empty() ? "" : "cd " + ShellQuote(dir) + " && ";
  cmd += ShellQuote(program);
  for (const std::string& a : args) cmd += " " + ShellQuote(a);
  cmd += " >" + ShellQuote(out.path()) + " 2>" + ShellQuote(err.path()) + " </dev/null";
  int raw = std::system(cmd.c_str());
  RunResult r;
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  r.out = ReadAll(out.path());
  r.err = ReadAll(err.path());
  return r;
}

inline RunResult RunTool(const std::string& program, const std::vector<std::string>& args) {
  return RunToolIn("", program, args);
}

using ScratchDir = testing_util::ScratchDir;  // tests/scratch_dir.h

inline std::string CoblkIo() { return COBLK_BIN_DIR "/coblk-io"; }
inline std::string CoblkImg() { return COBLK_BIN_DIR "/coblk-img"; }

using testing_util::HaveProgram;  // tests/shell.h

// The lines of s.
inline std::vector<std::string> Lines(const std::string& s) {
  std::vector<std::string> lines;
  std::stringstream ss(s);
  for (std::string l; std::getline(ss, l);) lines.push_back(l);
  return lines;
}

}  // namespace coblk::testing
