// Real NBD servers for the nbd tests: qemu-nbd and nbdkit, started by the
// test on a unix socket in a private temp dir, killed (and the dir removed)
// when the object dies, and killed by the kernel if the test process dies
// first (a crash, or ctest killing a test that timed out).
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/scratch_dir.h"
#include "tests/shell.h"

extern char** environ;

namespace coblk::testing_nbd {

// The inode of the unix socket listening at path (bound is not enough:
// connects are refused until listen()), from /proc/net/unix; empty if none.
inline std::string ListeningSocketInode(const std::string& path) {
  std::ifstream f("/proc/net/unix");
  std::string line;
  std::getline(f, line);  // header
  while (std::getline(f, line)) {
    std::istringstream ss(line);
    std::string num, refs, proto, flags, type, st, inode, p;
    if (!(ss >> num >> refs >> proto >> flags >> type >> st >> inode >> p)) continue;
    if (p == path && (std::stoul(flags, nullptr, 16) & 0x10000)) return inode;
  }
  return "";
}

// A private directory for sockets and images, removed with its contents.
using TempDir = testing_util::ScratchDir;  // tests/scratch_dir.h

inline std::string NbdkitPlugin() { return COBLK_BIN_DIR "/../lib/nbdkit-coblk-plugin.so"; }

// Whether process pid is gone: no such process, or a zombie (a process
// that is not our child is reaped by whoever adopted it, maybe never).
inline bool ProcessGone(pid_t pid) {
  if (kill(pid, 0) != 0 && errno == ESRCH) return true;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  std::getline(f, stat);
  const size_t paren = stat.rfind(')');
  return paren == std::string::npos || (paren + 2 < stat.size() && stat[paren + 2] == 'Z');
}

// Starts argv (argv[0] looked up on PATH) with extra_env added to this
// process's environment. The child gets SIGKILL when the thread that started
// it dies, so a server never outlives a test process that crashed or was
// killed (qemu-nbd has no --exit-with-parent). Returns -1 on failure.
inline pid_t SpawnTiedToParent(const std::vector<std::string>& argv,
                               const std::vector<std::string>& extra_env = {}) {
  // Everything the child needs is built before fork: it only calls
  // async-signal-safe functions.
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  std::vector<std::string> env_strings(extra_env);
  std::vector<char*> env;
  for (std::string& e : env_strings) env.push_back(e.data());
  for (char** e = environ; *e; ++e) env.push_back(*e);
  env.push_back(nullptr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid != 0) return pid;  // the parent (or -1)
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(127);
  execvpe(args[0], args.data(), env.data());
  _exit(127);
}

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
    if (socket.size() >= sizeof(sockaddr_un{}.sun_path)) {
      ADD_FAILURE() << "socket path too long for a unix socket: " << socket;
      return false;
    }
    socket_ = socket;
    unlink(socket.c_str());
    pid_ = SpawnTiedToParent(argv, extra_env);
    if (pid_ < 0) return false;
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
    pid_ = SpawnTiedToParent(argv);
    if (pid_ < 0) return false;
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
  pid_t pid() const { return pid_; }
  const std::string& socket() const { return socket_; }
  std::string uri(const std::string& export_name = {}) const {
    return "nbd+unix:///" + export_name + "?socket=" + socket_;
  }

 private:
  // Whether a unix socket at path is in the listening state (bound is not
  // enough: connects are refused until listen()). Read from /proc so that
  // no probe connection disturbs the server.
  static bool Listening(const std::string& path) { return !ListeningSocketInode(path).empty(); }

  pid_t pid_ = -1;
  std::string socket_;
};

// The processes that hold the listening unix socket at path (from
// /proc/net/unix and /proc/*/fd).
inline std::vector<pid_t> SocketListeners(const std::string& path) {
  const std::string inode = ListeningSocketInode(path);
  std::vector<pid_t> pids;
  if (inode.empty()) return pids;
  const std::string want = "socket:[" + inode + "]";
  std::error_code ec;
  for (const auto& proc : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = proc.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code fd_ec;
    for (const auto& fd : std::filesystem::directory_iterator(proc.path() / "fd", fd_ec)) {
      std::error_code link_ec;
      if (std::filesystem::read_symlink(fd.path(), link_ec) == want) {
        pids.push_back(static_cast<pid_t>(std::stol(name)));
        break;
      }
    }
  }
  return pids;
}

// A server that is not our child (one that daemonized, e.g. nbdkit without
// -f) listening on a unix socket: when the guard dies, whatever listens on
// the socket gets SIGTERM, and SIGKILL if it is still there 10 s later, so a
// failing test (even one whose server started but never said its pid) does
// not leave it running.
class DaemonGuard {
 public:
  explicit DaemonGuard(std::string socket) : socket_(std::move(socket)) {}
  ~DaemonGuard() { Stop(); }
  DaemonGuard(const DaemonGuard&) = delete;
  DaemonGuard& operator=(const DaemonGuard&) = delete;
  // Stops the listeners; returns how many there were.
  size_t Stop() {
    const std::vector<pid_t> pids = SocketListeners(socket_);
    for (pid_t pid : pids) kill(pid, SIGTERM);
    for (pid_t pid : pids) {
      for (int i = 0; i < 1000 && !ProcessGone(pid); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (!ProcessGone(pid)) kill(pid, SIGKILL);
    }
    return pids.size();
  }

 private:
  std::string socket_;
};

using testing_util::HaveProgram;  // tests/shell.h

}  // namespace coblk::testing_nbd
