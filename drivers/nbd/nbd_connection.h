// NbdConnection: one libnbd handle driven by a coblk EventLoop.
//
// libnbd does the protocol; this class only moves bytes between libnbd's
// non-blocking socket and the loop:
//  * the socket (nbd_aio_get_fd) is watched by the loop for exactly the
//    directions libnbd asks for (nbd_aio_get_direction: EPOLLIN while it
//    waits for replies, EPOLLOUT only while requests are queued to send);
//    readiness is reported with nbd_aio_notify_read/notify_write;
//  * a request is one nbd_aio_* call with a completion callback; the
//    coroutine that issued it suspends, and the callback's free function
//    (called by libnbd exactly once, right after the completion callback)
//    schedules it on the loop. Many requests are in flight at once; there is
//    no thread per request.
//
// Threading: a connection belongs to the loop thread that created it. Every
// method, the fd handler, and therefore every libnbd callback (they run
// inside nbd_aio_notify_* or, on early failure, inside the nbd_aio_* call)
// run on that thread, so nothing here needs a lock. libnbd's own handle lock
// is uncontended.
//
// Failures: when the server goes away (EOF, reset) libnbd moves to its DEAD
// state and completes every queued and in-flight command with an error
// (ENOTCONN); their coroutines resume with that error. Later requests fail at
// submission. There is no reconnect: the node stays failed until reopened.
#pragma once

#include <libnbd.h>

#include <coroutine>
#include <cstdint>
#include <memory>
#include <string>

#include "coroutine/task.h"
#include "io/event_loop.h"
#include "util/status.h"

namespace coblk::nbd {

// Where to connect. Exactly one of uri, unix_path, host is set.
struct NbdTarget {
  std::string uri;          // nbd://, nbd+unix://, ... handed to libnbd
  std::string unix_path;    // server.type=unix
  std::string host;         // server.type=inet
  std::string port = "10809";
  std::string export_name;  // for unix_path / host (a URI carries its own)
  std::string Describe() const;  // the URI form, for messages and filename
};

// The completion of one command. Lives in the issuing coroutine's frame,
// which stays suspended until libnbd has called Free (after which libnbd
// never touches it again).
class NbdOp {
 public:
  explicit NbdOp(EventLoop& loop) : loop_(loop) {}
  NbdOp(const NbdOp&) = delete;
  NbdOp& operator=(const NbdOp&) = delete;

  nbd_completion_callback callback() { return {&NbdOp::OnComplete, this, &NbdOp::OnFree}; }
  bool done() const { return done_; }
  int error() const { return error_; }

  auto wait() {
    struct Awaiter {
      NbdOp& op;
      bool await_ready() const noexcept { return op.done_; }
      void await_suspend(std::coroutine_handle<> h) noexcept { op.waiter_ = h; }
      void await_resume() const noexcept {}
    };
    return Awaiter{*this};
  }

 private:
  static int OnComplete(void* user_data, int* error);
  static void OnFree(void* user_data);

  EventLoop& loop_;
  std::coroutine_handle<> waiter_;
  int error_ = 0;
  bool done_ = false;
};

class NbdConnection {
 public:
  // Connects and negotiates without blocking the loop (DNS lookup for a
  // host name excepted: libnbd resolves it synchronously). Asks for the
  // base:allocation meta context.
  static Task<Result<std::unique_ptr<NbdConnection>>> Connect(EventLoop& loop, NbdTarget target);
  ~NbdConnection();

  NbdConnection(const NbdConnection&) = delete;
  NbdConnection& operator=(const NbdConnection&) = delete;

  nbd_handle* handle() const { return h_; }
  const std::string& where() const { return where_; }

  // Awaits a command just submitted with op.callback(). cookie is the
  // nbd_aio_* return value; -1 means libnbd refused it (its error is used).
  // what names the command in error messages ("read", "write", ...).
  Task<Status> Finish(NbdOp& op, int64_t cookie, const char* what);

  // Sends NBD_CMD_DISC once nothing is in flight and waits (bounded) for the
  // server to close. Requests must not be issued afterwards.
  Task<void> Disconnect();

 private:
  NbdConnection(EventLoop& loop, nbd_handle* h, std::string where)
      : loop_(loop), h_(h), where_(std::move(where)) {}

  // Makes the loop's watch on the socket match what libnbd wants now.
  void UpdatePoll();
  void Unwatch();
  void OnEvents(uint32_t events);
  bool Gone() const;
  // Suspends until the next socket event has been handled (or a timer fires).
  auto next_event() {
    struct Awaiter {
      NbdConnection& c;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> h) noexcept { c.state_waiter_ = h; }
      void await_resume() const noexcept {}
    };
    return Awaiter{*this};
  }
  void WakeStateWaiter();

  EventLoop& loop_;
  nbd_handle* h_;
  std::string where_;
  int fd_ = -1;             // the socket the loop watches, -1 if none
  uint32_t events_ = 0;     // what it is watched for
  std::coroutine_handle<> state_waiter_;  // Connect/Disconnect waiting for progress
  std::string last_error_;  // libnbd's message from a failed notify
  int last_errno_ = 0;
  int in_flight_ = 0;
};

}  // namespace coblk::nbd
