// EventLoop::modify_fd: the watched events of a registered fd change without
// re-registering its handler (the nbd driver turns EPOLLOUT on only while
// libnbd has bytes to send).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "io/event_loop.h"
#include "tests/coroutine/test_loop.h"

namespace coblk {
namespace {

using EventLoopModifyFdTest = LoopTest;

TEST_F(EventLoopModifyFdTest, SwitchesBetweenReadAndWriteInterest) {
  int fds[2];
  ASSERT_EQ(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
  // The write end is always writable; watched for EPOLLIN it never fires.
  int calls = 0;
  uint32_t last = 0;
  ASSERT_TRUE(loop().add_fd(fds[1], EPOLLIN, [&](uint32_t ev) {
    ++calls;
    last = ev;
  }));
  for (int i = 0; i < 3; ++i) loop().run_once(false);
  EXPECT_EQ(calls, 0);
  ASSERT_TRUE(loop().modify_fd(fds[1], EPOLLOUT));
  loop().run_once(true);
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(last & EPOLLOUT);
  ASSERT_TRUE(loop().modify_fd(fds[1], EPOLLIN));
  for (int i = 0; i < 3; ++i) loop().run_once(false);
  EXPECT_EQ(calls, 1);
  loop().remove_fd(fds[1]);
  // An fd that is not registered is an error, not a silent no-op.
  EXPECT_FALSE(loop().modify_fd(fds[1], EPOLLOUT));
  close(fds[0]);
  close(fds[1]);
}

}  // namespace
}  // namespace coblk
