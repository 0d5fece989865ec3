#include "io/aio_engine.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "io/exit_teardown.h"

namespace coblk {

Result<std::unique_ptr<AioEngine>> AioEngine::Create(EventLoop& loop,
                                                     unsigned queue_depth) {
  if (queue_depth == 0 || queue_depth > 65536)
    return MakeError(EINVAL, "invalid AIO queue depth " + std::to_string(queue_depth));
  std::unique_ptr<AioEngine> engine(new AioEngine(loop, queue_depth));
  int r = io_setup(static_cast<int>(queue_depth), &engine->ctx_);
  if (r < 0) {
    engine->ctx_ = nullptr;
    return ErrnoError("io_setup (queue depth " + std::to_string(queue_depth) + ")", -r);
  }
  engine->event_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (engine->event_fd_ < 0) return ErrnoError("eventfd");
  AioEngine* raw = engine.get();
  COBLK_RETURN_IF_ERROR(
      loop.add_fd(engine->event_fd_, EPOLLIN, [raw](uint32_t) { raw->on_completion_event(); }));
  engine->hook_id_ = loop.add_pre_poll_hook([raw] { raw->submit_pending(); });
  engine->events_.resize(queue_depth);
  return engine;
}

AioEngine::~AioEngine() {
  if (hook_id_) loop_.remove_pre_poll_hook(hook_id_);
  if (event_fd_ >= 0) {
    loop_.remove_fd(event_fd_);
    close(event_fd_);
  }
  // io_destroy waits for requests still in the kernel. An idle context of
  // a program about to exit may be left to its exit (io/exit_teardown.h):
  // no request can complete into memory this engine no longer owns.
  if (ctx_ && !(in_flight_ == 0 && KeepAioContextUntilExit())) io_destroy(ctx_);
}

AioEngine::Op::Op(AioEngine& engine, bool is_write, int fd, IoVector& iov, uint64_t offset)
    : engine_(engine), is_write_(is_write) {
  req_.iov = &iov;
  iovec* entries = iov.data();
  if (is_write)
    io_prep_pwritev(&req_.cb, fd, entries, iov.count(), static_cast<long long>(offset));
  else
    io_prep_preadv(&req_.cb, fd, entries, iov.count(), static_cast<long long>(offset));
  req_.cb.data = &req_;
  io_set_eventfd(&req_.cb, engine.event_fd_);
}

void AioEngine::Op::await_suspend(std::coroutine_handle<> h) {
  req_.waiter = h;
  engine_.enqueue(&req_);
}

Status AioEngine::Op::await_resume() {
  long res = req_.result;
  size_t want = req_.iov->size();
  if (res < 0) {
    return MakeError(static_cast<int>(-res),
                     std::string(is_write_ ? "write" : "read") + " failed: " +
                         std::strerror(static_cast<int>(-res)));
  }
  if (static_cast<size_t>(res) < want) {
    if (is_write_) return MakeError(ENOSPC, "short write: " + std::string(std::strerror(ENOSPC)));
    // Reading past end of file: the rest reads as zeros.
    req_.iov->memset(static_cast<size_t>(res), 0, want - static_cast<size_t>(res));
  }
  return OkStatus();
}

void AioEngine::enqueue(Request* req) {
  if (in_flight_ + pending_.size() >= depth_) ++stats_.parked;
  pending_.push_back(req);
  // A full batch goes out now; smaller ones wait for the pre-poll hook so
  // everything issued in this iteration shares one io_submit.
  if (!plugged_ && pending_.size() >= kEagerBatch) submit_pending();
}

void AioEngine::unplug() {
  if (plugged_ > 0 && --plugged_ == 0) submit_pending();
}

void AioEngine::submit_pending() {
  while (!plugged_ && !pending_.empty() && in_flight_ < depth_) {
    size_t n = std::min<size_t>(pending_.size(), depth_ - in_flight_);
    batch_.clear();
    for (size_t i = 0; i < n; ++i) batch_.push_back(&pending_[i]->cb);
    int r = io_submit(ctx_, static_cast<long>(n), batch_.data());
    if (r == -EAGAIN) {
      // The kernel is out of slots. Completions will retry; if none are in
      // flight, retry on a short timer so parked requests cannot hang.
      ++stats_.eagain;
      if (in_flight_ == 0 && !retry_timer_armed_) {
        retry_timer_armed_ = true;
        loop_.add_timer(std::chrono::milliseconds(1), [this] {
          retry_timer_armed_ = false;
          submit_pending();
        });
      }
      return;
    }
    if (r < 0) {
      // The first request is bad (e.g. EBADF): fail it alone, go on.
      Request* req = pending_.front();
      pending_.pop_front();
      req->result = r;
      loop_.schedule(req->waiter);
      continue;
    }
    ++stats_.submit_calls;
    for (int i = 0; i < r; ++i) pending_.pop_front();
    in_flight_ += static_cast<unsigned>(r);
    stats_.max_in_flight = std::max(stats_.max_in_flight, in_flight_);
  }
}

void AioEngine::on_completion_event() {
  uint64_t count;
  while (read(event_fd_, &count, sizeof count) > 0) {
  }
  timespec zero{0, 0};
  for (;;) {
    int n = io_getevents(ctx_, 0, static_cast<long>(events_.size()), events_.data(), &zero);
    if (n <= 0) break;
    in_flight_ -= static_cast<unsigned>(n);
    // Refill the freed slots before resuming anyone, keeping the queue full.
    submit_pending();
    for (int i = 0; i < n; ++i) {
      auto* req = static_cast<Request*>(events_[i].data);
      complete(req, static_cast<long>(events_[i].res));
    }
    if (static_cast<size_t>(n) < events_.size()) break;
  }
}

void AioEngine::complete(Request* req, long result) {
  req->result = result;
  ++stats_.requests;
  req->waiter.resume();
}

}  // namespace coblk
