#include "io/exit_teardown.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "io/aio_engine.h"
#include "io/event_loop.h"
#include "tests/scratch_dir.h"

namespace coblk {
namespace {

using testing_util::ScratchDir;

// The body of a short-lived program, run in a forked child: optionally
// holds an OFD write lock on `locked_file` (its descriptor left open, as a
// program that exits without closing its images), opts in, makes and
// destroys `engines` AIO engines and checks how many contexts were kept.
// Exit codes other than 0 say which step failed.
void Program(int engines, int expect_kept, const std::string& locked_file = "") {
  if (!locked_file.empty()) {
    const int fd = open(locked_file.c_str(), O_RDWR | O_CLOEXEC);
    struct flock lk = {};
    lk.l_type = F_WRLCK;
    lk.l_whence = SEEK_SET;
    if (fd < 0 || fcntl(fd, F_OFD_SETLK, &lk) != 0) std::_Exit(10);
  }
  if (!DeferAioTeardownPastExit()) std::_Exit(11);
  auto loop = EventLoop::Create();
  if (!loop) std::_Exit(12);
  for (int i = 0; i < engines; ++i) {
    auto engine = AioEngine::Create(**loop);
    if (!engine) std::_Exit(13);
  }
  if (KeptAioContexts() != expect_kept) std::_Exit(14);
  std::exit(0);  // atexit: the holder starts here
}

class ExitTeardownTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!kAioTeardownDeferralSupported) GTEST_SKIP() << "not in sanitizer builds";
    // The holder is orphaned when the program exits: adopt it here, to
    // see it end.
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  }
  void TearDown() override {
    KillAdopted();
    prctl(PR_SET_CHILD_SUBREAPER, 0);
  }

  // Runs `program` in a forked child (no pipes to it, so a holder that
  // kept the child's files cannot hang the test) and returns the child's
  // exit code, -1 if it did not exit normally. (ctest runs each test in a
  // process of its own, which has one thread here.)
  template <typename Fn>
  static int Run(Fn program) {
    const pid_t pid = fork();
    if (pid == 0) {
      program();
      std::_Exit(20);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  // Waits (bounded) for the adopted holder; returns its wait status, or -1
  // if no holder was ever adopted or it did not end.
  static int ReapHolder() {
    for (int i = 0; i < 1000; ++i) {
      int status = 0;
      const pid_t pid = waitpid(-1, &status, WNOHANG);
      if (pid > 0) return status;
      if (pid < 0 && errno == ECHILD) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "the holder did not end within 10 s";
    return -1;
  }

  // Kills and reaps any holder still around (only after a failure).
  static void KillAdopted() {
    for (const auto& e : std::filesystem::directory_iterator("/proc")) {
      const std::string name = e.path().filename();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream stat(e.path() / "stat");
      std::string line;
      std::getline(stat, line);
      const size_t close_paren = line.rfind(')');
      if (close_paren == std::string::npos) continue;
      std::istringstream rest(line.substr(close_paren + 2));
      char state;
      pid_t ppid = 0;
      rest >> state >> ppid;
      if (ppid == getpid()) kill(std::stoi(name), SIGKILL);
    }
    while (waitpid(-1, nullptr, WNOHANG) > 0) {
    }
  }
};

TEST_F(ExitTeardownTest, HolderOutlivesTheProgramAndEndsByItself) {
  EXPECT_EQ(Run([] { Program(1, 1); }), 0);
  const int status = ReapHolder();
  ASSERT_NE(status, -1) << "no holder process outlived the program";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1) << "more than one holder";
}

TEST_F(ExitTeardownTest, KeepsAtMostTheLimit) {
  EXPECT_EQ(Run([] { Program(kMaxKeptAioContexts + 4, kMaxKeptAioContexts); }), 0);
  EXPECT_NE(ReapHolder(), -1);
}

// The holder must not keep the program's files (and their locks) open past
// the program's exit: a script's next command would find its image locked.
TEST_F(ExitTeardownTest, ProgramFilesAreReleasedWhenItExits) {
  ScratchDir dir("exit_teardown");
  const std::string file = dir.path() + "/locked";
  {
    const int fd = open(file.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    close(fd);
  }
  EXPECT_EQ(Run([&] { Program(1, 1, file); }), 0);
  const int fd = open(file.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  struct flock lk = {};
  lk.l_type = F_WRLCK;
  lk.l_whence = SEEK_SET;
  EXPECT_EQ(fcntl(fd, F_OFD_SETLK, &lk), 0) << "still locked after the program's exit";
  close(fd);
  EXPECT_NE(ReapHolder(), -1);
}

TEST_F(ExitTeardownTest, EnvironmentVariableTurnsItOff) {
  EXPECT_EQ(Run([] {
              setenv("COBLK_NO_FAST_EXIT", "1", 1);
              std::_Exit(DeferAioTeardownPastExit() ? 1 : 0);
            }),
            0);
}

// A process that did not opt in (an embedder) frees every context itself.
TEST(ExitTeardownDefaultTest, ContextsAreFreedWithoutOptingIn) {
  auto loop = EventLoop::Create();
  ASSERT_TRUE(loop);
  { auto engine = AioEngine::Create(**loop); ASSERT_TRUE(engine); }
  EXPECT_EQ(KeptAioContexts(), 0);
  EXPECT_FALSE(KeepAioContextUntilExit());
}

}  // namespace
}  // namespace coblk
