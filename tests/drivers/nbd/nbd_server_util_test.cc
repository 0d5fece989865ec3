// The test servers' helpers (nbd_server_util.h): a server never outlives its
// test, whether the test ends, fails, or its process dies without cleanup
// (a crash, or ctest killing a test that timed out).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/drivers/nbd/nbd_server_util.h"

namespace coblk {
namespace {

using testing_nbd::NbdServer;
using testing_nbd::ProcessGone;

bool GoneWithin(pid_t pid, std::chrono::seconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (!ProcessGone(pid) && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return ProcessGone(pid);
}

TEST(NbdServerUtil, DestructorStopsAndReapsTheServer) {
  if (!testing_nbd::HaveProgram("nbdkit")) GTEST_SKIP() << "nbdkit not installed";
  testing_nbd::TempDir dir;
  pid_t pid = -1;
  {
    NbdServer server;
    ASSERT_TRUE(server.Start({"nbdkit", "-f", "-U", dir / "sock", "memory", "1M"}, dir / "sock"));
    pid = server.pid();
    ASSERT_GT(pid, 0);
  }
  // Reaped, not a zombie: no such process at all.
  const int rc = kill(pid, 0), err = errno;
  EXPECT_EQ(rc, -1);
  EXPECT_EQ(err, ESRCH);
}

// qemu-nbd has no --exit-with-parent: a test process that dies without
// running destructors must still take its server with it.
TEST(NbdServerUtil, ServerDiesWithTheProcessThatStartedIt) {
  if (!testing_nbd::HaveProgram("qemu-nbd")) GTEST_SKIP() << "qemu-nbd not installed";
  testing_nbd::TempDir dir;
  const std::string img = dir / "disk.raw", sock = dir / "sock";
  {
    const int fd = ::open(img.c_str(), O_CREAT | O_WRONLY, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 1 << 20), 0);
    ::close(fd);
  }
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    // The "test process": starts a server, reports its pid, dies at once.
    close(fds[0]);
    auto* server = new NbdServer;  // never destroyed, as in a crash
    pid_t pid = server->Start({"qemu-nbd", "-k", sock, "-f", "raw", "-t", img}, sock)
                    ? server->pid()
                    : -1;
    (void)!write(fds[1], &pid, sizeof pid);
    _exit(0);
  }
  close(fds[1]);
  pid_t server_pid = -1;
  const ssize_t n = read(fds[0], &server_pid, sizeof server_pid);
  close(fds[0]);
  int status;
  waitpid(child, &status, 0);
  ASSERT_EQ(n, static_cast<ssize_t>(sizeof server_pid));
  ASSERT_GT(server_pid, 0) << "qemu-nbd did not start";
  const bool gone = GoneWithin(server_pid, std::chrono::seconds(10));
  if (!gone) kill(server_pid, SIGKILL);  // this test must not leak it either
  EXPECT_TRUE(gone) << "qemu-nbd outlived the process that started it";
}

TEST(NbdServerUtil, DaemonGuardStopsADaemonizedServer) {
  if (!testing_nbd::HaveProgram("nbdkit")) GTEST_SKIP() << "nbdkit not installed";
  testing_nbd::TempDir dir;
  const std::string sock = dir / "sock", pid_file = dir / "pid";
  pid_t pid = -1;
  {
    testing_nbd::DaemonGuard guard(sock);
    // Without -f nbdkit forks into the background once it listens.
    ASSERT_EQ(testing_util::Sh("nbdkit -U '" + sock + "' -P '" + pid_file + "' memory 1M"), 0);
    std::string text;
    ASSERT_EQ(testing_util::Sh("cat '" + pid_file + "'", &text), 0);
    pid = static_cast<pid_t>(std::stol(text));
    ASSERT_GT(pid, 0);
    ASSERT_EQ(testing_nbd::SocketListeners(sock), std::vector<pid_t>{pid});
  }
  EXPECT_TRUE(GoneWithin(pid, std::chrono::seconds(10)));
  EXPECT_TRUE(testing_nbd::SocketListeners(sock).empty());
}

}  // namespace
}  // namespace coblk
