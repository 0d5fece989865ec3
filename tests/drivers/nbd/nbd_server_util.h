// Real NBD servers for the nbd tests: qemu-nbd and nbdkit, started by the
// test on a unix socket in a private temp dir, killed (and the dir removed)
// when the object dies.
#pragma once

#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/scratch_dir.h"
#include "tests/shell.h"

extern char** environ;

namespace coblk::testing_nbd {

// A private directory for sockets and images, removed with its contents.
using TempDir = testing_util::ScratchDir;  // tests/scratch_dir.h

inline std::string NbdkitPlugin() { return COBLK_BIN_DIR "/../lib/nbdkit-coblk-plugin.so"; }

// One server process. Start() returns once the socket accepts connections.
class NbdServer {
 public:
  NbdServer() = default;
  ~NbdServer() { Stop(); }
  NbdServer(const NbdServer&) = delete;
  NbdServer& operator=(const NbdServer&) = delete;

  // argv[0] is looked up on PATH. socket: the path the server will create.
  bool Start(const std::vector<std::string>& argv, const std::string& socket,
             const std::vector<std::string>& extra_env = {}) {
    Stop();
    socket_ = socket;
    unlink(socket.c_str());
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    std::vector<std::string> env_strings(extra_env);
    std::vector<char*> env;
    for (std::string& e : env_strings) env.push_back(e.data());
    for (char** e = environ; *e; ++e) env.push_back(*e);
    env.push_back(nullptr);
    if (posix_spawnp(&pid_, args[0], nullptr, nullptr, args.data(), env.data()) != 0) {
      pid_ = -1;
      return false;
    }
    // Wait (up to 20 s) for the socket to listen; fail early if the server dies.
    for (int i = 0; i < 2000; ++i) {
      if (Listening(socket)) return true;
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    Stop();
    return false;
  }

  // For a TCP server: readiness is the pid file the server writes once it
  // listens (nbdkit -P, qemu-nbd --pid-file).
  bool StartWithPidFile(const std::vector<std::string>& argv, const std::string& pid_file) {
    Stop();
    socket_.clear();
    unlink(pid_file.c_str());
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    if (posix_spawnp(&pid_, args[0], nullptr, nullptr, args.data(), environ) != 0) {
      pid_ = -1;
      return false;
    }
    for (int i = 0; i < 2000; ++i) {
      struct stat st;
      if (stat(pid_file.c_str(), &st) == 0 && st.st_size > 0) return true;
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    Stop();
    return false;
  }

  // SIGTERM (clean shutdown) or SIGKILL (a crash), then reap.
  void Stop(int sig = SIGTERM) {
    if (pid_ <= 0) return;
    kill(pid_, sig);
    // A server that does not exit within 10 s of SIGTERM is killed: a test
    // must never hang on its server.
    int status;
    bool reaped = false;
    for (int i = 0; i < 1000 && !reaped; ++i) {
      reaped = waitpid(pid_, &status, WNOHANG) == pid_;
      if (!reaped) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (!reaped) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
    }
    pid_ = -1;
    if (!socket_.empty()) unlink(socket_.c_str());
  }
  void Kill() { Stop(SIGKILL); }
  bool running() const { return pid_ > 0; }
  const std::string& socket() const { return socket_; }
  std::string uri(const std::string& export_name = {}) const {
    return "nbd+unix:///" + export_name + "?socket=" + socket_;
  }

 private:
  // Whether a unix socket at path is in the listening state (bound is not
  // enough: connects are refused until listen()). Read from /proc so that
  // no probe connection disturbs the server.
  static bool Listening(const std::string& path) {
    std::ifstream f("/proc/net/unix");
    std::string line;
    std::getline(f, line);  // header
    while (std::getline(f, line)) {
      std::istringstream ss(line);
      std::string num, refs, proto, flags, type, st, inode, p;
      if (!(ss >> num >> refs >> proto >> flags >> type >> st >> inode >> p)) continue;
      if (p == path && (std::stoul(flags, nullptr, 16) & 0x10000)) return true;
    }
    return false;
  }

  pid_t pid_ = -1;
  std::string socket_;
};

using testing_util::HaveProgram;  // tests/shell.h

}  // namespace coblk::testing_nbd
