#include "drivers/nbd/nbd_connection.h"

#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <utility>

namespace coblk::nbd {

namespace {

// libnbd's thread-local error of the call that just failed.
std::string LastNbdError() {
  const char* e = nbd_get_error();
  return e && *e ? e : "unknown libnbd error";
}

int LastNbdErrno(int fallback = EIO) {
  int e = nbd_get_errno();
  return e > 0 ? e : fallback;
}

constexpr auto kDisconnectGrace = std::chrono::seconds(2);

}  // namespace

std::string NbdTarget::Describe() const {
  if (!uri.empty()) return uri;
  if (!unix_path.empty()) return "nbd+unix:///" + export_name + "?socket=" + unix_path;
  return "nbd://" + host + ":" + port + "/" + export_name;
}

int NbdOp::OnComplete(void* user_data, int* error) {
  static_cast<NbdOp*>(user_data)->error_ = *error;
  return 1;  // retire the command automatically
}

void NbdOp::OnFree(void* user_data) {
  auto* op = static_cast<NbdOp*>(user_data);
  op->done_ = true;
  // Never resume inline: this runs inside libnbd (notify_read, or the
  // submitting call itself), whose handle lock is held.
  if (op->waiter_) op->loop_.schedule(std::exchange(op->waiter_, {}));
}

Task<Result<std::unique_ptr<NbdConnection>>> NbdConnection::Connect(EventLoop& loop,
                                                                    NbdTarget target) {
  nbd_handle* h = nbd_create();
  if (!h) co_return MakeError(LastNbdErrno(ENOMEM), "nbd_create: " + LastNbdError());
  const std::string where = target.Describe();
  std::unique_ptr<NbdConnection> c(new NbdConnection(loop, h, where));
  auto fail = [&](const std::string& what) {
    return MakeError(LastNbdErrno(), "Failed to connect to '" + where + "': " + what);
  };
  if (nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == -1) co_return fail(LastNbdError());
  int r;
  if (!target.uri.empty()) {
    r = nbd_aio_connect_uri(h, target.uri.c_str());
  } else {
    if (nbd_set_export_name(h, target.export_name.c_str()) == -1) co_return fail(LastNbdError());
    r = !target.unix_path.empty()
            ? nbd_aio_connect_unix(h, target.unix_path.c_str())
            : nbd_aio_connect_tcp(h, target.host.c_str(), target.port.c_str());
  }
  if (r == -1) co_return fail(LastNbdError());
  while (!nbd_aio_is_ready(h)) {
    if (c->Gone()) {
      co_return fail(c->last_error_.empty() ? "connection closed during negotiation"
                                            : c->last_error_);
    }
    c->UpdatePoll();
    if (c->fd_ < 0) co_return fail("libnbd has no socket to wait on");
    co_await c->next_event();
  }
  c->UpdatePoll();
  co_return c;
}

NbdConnection::~NbdConnection() {
  Unwatch();
  // Completes (with an error) anything still queued; their free callbacks
  // would schedule waiters, but callers never destroy a connection with
  // requests in flight (Disconnect waits for them).
  nbd_close(h_);
}

bool NbdConnection::Gone() const { return nbd_aio_is_dead(h_) || nbd_aio_is_closed(h_); }

void NbdConnection::Unwatch() {
  if (fd_ >= 0) loop_.remove_fd(fd_);
  fd_ = -1;
  events_ = 0;
}

void NbdConnection::UpdatePoll() {
  if (Gone()) {
    // libnbd has closed (or will close) the socket; stop watching it so a
    // hung-up fd cannot make the loop spin.
    Unwatch();
    return;
  }
  const int fd = nbd_aio_get_fd(h_);
  const unsigned dir = fd < 0 ? 0 : nbd_aio_get_direction(h_);
  uint32_t want = 0;
  if (dir & LIBNBD_AIO_DIRECTION_READ) want |= EPOLLIN;
  if (dir & LIBNBD_AIO_DIRECTION_WRITE) want |= EPOLLOUT;
  if (want == 0) {
    Unwatch();
    return;
  }
  if (fd == fd_ && want == events_) return;
  if (fd == fd_) {
    // MOD fails with ENOENT if libnbd closed the socket and got the same
    // number back for a new one (a TCP connect moving to the next address):
    // the old registration died with the old socket. Register afresh then.
    if (loop_.modify_fd(fd, want)) {
      events_ = want;
      return;
    }
  }
  Unwatch();
  Status s = loop_.add_fd(fd, want, [this](uint32_t ev) { OnEvents(ev); });
  if (!s) {
    last_error_ = "cannot watch the NBD socket: " + s.error().ToString();
    last_errno_ = s.error().errnum();
    // Nothing would ever complete: break the socket so libnbd sees the
    // connection end and fails every request now rather than hang.
    ::shutdown(fd, SHUT_RDWR);
    if (dir & LIBNBD_AIO_DIRECTION_READ)
      nbd_aio_notify_read(h_);
    else
      nbd_aio_notify_write(h_);
    return;
  }
  fd_ = fd;
  events_ = want;
}

void NbdConnection::OnEvents(uint32_t ev) {
  const bool error_or_hup = ev & (EPOLLERR | EPOLLHUP);
  int r = 0;
  unsigned dir = nbd_aio_get_direction(h_);
  if ((ev & EPOLLOUT) || (error_or_hup && (dir & LIBNBD_AIO_DIRECTION_WRITE))) {
    r = nbd_aio_notify_write(h_);
  }
  dir = nbd_aio_get_direction(h_);
  if (r != -1 && ((ev & EPOLLIN) || error_or_hup) && (dir & LIBNBD_AIO_DIRECTION_READ)) {
    r = nbd_aio_notify_read(h_);
  }
  if (r == -1) {
    last_error_ = LastNbdError();
    last_errno_ = LastNbdErrno();
  }
  UpdatePoll();
  WakeStateWaiter();
}

void NbdConnection::WakeStateWaiter() {
  if (state_waiter_) loop_.schedule(std::exchange(state_waiter_, {}));
}

Task<Status> NbdConnection::Finish(NbdOp& op, int64_t cookie, const char* what) {
  if (cookie == -1) {
    // Refused before sending (dead connection, strict-mode checks). libnbd
    // has already called (or will never call) the callbacks.
    std::string msg = LastNbdError();
    int err = LastNbdErrno();
    if (Gone() && !last_error_.empty()) msg = last_error_ + " (" + msg + ")";
    co_return MakeError(err, std::string("NBD ") + what + " failed: " + msg);
  }
  ++in_flight_;
  UpdatePoll();  // the request may still sit in libnbd's send queue
  co_await op.wait();
  --in_flight_;
  if (in_flight_ == 0) WakeStateWaiter();
  if (op.error() != 0) {
    std::string msg = std::string("NBD ") + what + " failed: " + std::strerror(op.error());
    if (Gone()) {
      msg += " (connection to '" + where_ + "' lost";
      if (!last_error_.empty()) msg += ": " + last_error_;
      msg += ")";
    }
    co_return MakeError(op.error(), msg);
  }
  co_return OkStatus();
}

Task<void> NbdConnection::Disconnect() {
  // Requests still in flight complete (or fail) first; Disconnect is only
  // called from close, after the block layer drained its requests.
  while (in_flight_ > 0 && !Gone()) co_await next_event();
  if (Gone()) {
    Unwatch();
    co_return;
  }
  if (nbd_aio_disconnect(h_, 0) == -1) {
    Unwatch();
    co_return;
  }
  UpdatePoll();
  // Wait for NBD_CMD_DISC to leave and the server to hang up, but never
  // longer than the grace period: a server that keeps the socket open
  // must not stall close.
  bool expired = false;
  const Executor::TimerId timer =
      loop_.add_timer(kDisconnectGrace, [this, &expired] {
        expired = true;
        WakeStateWaiter();
      });
  while (!Gone() && !expired && fd_ >= 0) co_await next_event();
  loop_.cancel_timer(timer);
  Unwatch();
}

}  // namespace coblk::nbd
