#include "io/event_loop.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "io/aio_engine.h"

namespace coblk {

Result<std::unique_ptr<EventLoop>> EventLoop::Create() {
  std::unique_ptr<EventLoop> loop(new EventLoop());
  loop->epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (loop->epfd_ < 0) return ErrnoError("epoll_create1");
  loop->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (loop->wake_fd_ < 0) return ErrnoError("eventfd");
  EventLoop* raw = loop.get();
  COBLK_RETURN_IF_ERROR(loop->add_fd(loop->wake_fd_, EPOLLIN, [raw](uint32_t) {
    uint64_t v;
    while (read(raw->wake_fd_, &v, sizeof v) > 0) {
    }
    raw->drain_posted();
  }));
  return loop;
}

EventLoop::~EventLoop() {
  { std::lock_guard<std::mutex> lock(posted_mu_); }  // a poster still inside post()
  aio_.reset();  // unregisters its eventfd from this loop
  if (Executor::current() == this) set_current(nullptr);
  if (wake_fd_ >= 0) close(wake_fd_);
  if (epfd_ >= 0) close(epfd_);
}

Result<AioEngine*> EventLoop::aio_engine(unsigned queue_depth) {
  if (!aio_) {
    auto engine = AioEngine::Create(*this, queue_depth);
    if (!engine) return std::unexpected(engine.error());
    aio_ = std::move(*engine);
  }
  return aio_.get();
}

// The wake-up is done under posted_mu_: once the callback is visible the
// loop may run it, and its owner may then destroy the loop, so a poster must
// not touch the loop after releasing the mutex (the destructor takes it to
// wait for a poster still inside).
void EventLoop::post(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(posted_mu_);
  posted_.push_back(std::move(fn));
  // One eventfd write per burst of posts is enough to wake the loop.
  if (!wake_pending_.exchange(true, std::memory_order_acq_rel)) {
    uint64_t one = 1;
    ssize_t r = write(wake_fd_, &one, sizeof one);
    (void)r;  // EAGAIN means the counter is already non-zero: still woken.
  }
}

void EventLoop::drain_posted() {
  wake_pending_.store(false, std::memory_order_release);
  std::vector<std::function<void()>> fns;
  {
    std::lock_guard<std::mutex> lock(posted_mu_);
    fns.swap(posted_);
  }
  for (auto& fn : fns) ready_.push_back({{}, std::move(fn)});
}

void EventLoop::schedule(std::coroutine_handle<> h) { ready_.push_back({h, {}}); }

void EventLoop::add_bh(std::function<void()> fn) {
  ready_.push_back({{}, std::move(fn)});
}

Executor::TimerId EventLoop::add_timer(std::chrono::nanoseconds delay,
                                       std::function<void()> fn) {
  TimerId id = next_timer_id_++;
  timers_.push({std::chrono::steady_clock::now() + delay, id});
  timer_fns_.emplace(id, std::move(fn));
  return id;
}

void EventLoop::cancel_timer(TimerId id) { timer_fns_.erase(id); }

Status EventLoop::add_fd(int fd, uint32_t events, FdHandler handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) < 0)
    return ErrnoError("epoll_ctl(ADD)");
  handlers_[fd] = std::make_shared<FdHandler>(std::move(handler));
  return OkStatus();
}

Status EventLoop::modify_fd(int fd, uint32_t events) {
  if (!handlers_.contains(fd)) return MakeError(ENOENT, "modify_fd: fd is not watched");
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) < 0) return ErrnoError("epoll_ctl(MOD)");
  return OkStatus();
}

void EventLoop::remove_fd(int fd) {
  epoll_ctl(epfd_, EPOLL_CTL_DEL, fd, nullptr);
  handlers_.erase(fd);
}

int EventLoop::add_pre_poll_hook(std::function<void()> hook) {
  int id = next_hook_id_++;
  pre_poll_hooks_.emplace_back(id, std::move(hook));
  return id;
}

void EventLoop::remove_pre_poll_hook(int id) {
  std::erase_if(pre_poll_hooks_, [id](const auto& h) { return h.first == id; });
}

int EventLoop::poll_timeout_ms(bool block) {
  if (!block || !ready_.empty()) return 0;
  // Skip cancelled timers at the top so they do not cause early wake-ups.
  while (!timers_.empty() && !timer_fns_.contains(timers_.top().id)) timers_.pop();
  if (timers_.empty()) return -1;
  auto wait = timers_.top().deadline - std::chrono::steady_clock::now();
  if (wait <= std::chrono::nanoseconds::zero()) return 0;
  // Round up so we never wake before the deadline and spin.
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(wait).count();
  return ms > 1000000 ? 1000000 : static_cast<int>(ms);
}

void EventLoop::run_timers() {
  auto now = std::chrono::steady_clock::now();
  while (!timers_.empty() && timers_.top().deadline <= now) {
    TimerId id = timers_.top().id;
    timers_.pop();
    auto it = timer_fns_.find(id);
    if (it == timer_fns_.end()) continue;  // cancelled
    auto fn = std::move(it->second);
    timer_fns_.erase(it);
    fn();
  }
}

void EventLoop::run_ready() {
  // Run what is queued now; work queued by these items waits for the next
  // iteration so a self-rescheduling coroutine cannot starve I/O polling.
  running_.swap(ready_);
  for (auto& item : running_) {
    if (item.handle)
      item.handle.resume();
    else
      item.fn();
  }
  running_.clear();
}

void EventLoop::run_once(bool block) {
  if (in_iteration_) {
    std::fprintf(stderr,
                 "coblk: EventLoop re-entered: run_once() (e.g. through sync_wait() or a "
                 "blocking BlockBackend call) was called from code running on the same loop; "
                 "await the co_* form instead (co_close() to close a backend)\n");
    std::abort();
  }
  struct IterationScope {
    EventLoop& loop;
    Executor* previous = Executor::current();
    explicit IterationScope(EventLoop& l) : loop(l) {
      loop.in_iteration_ = true;
      loop.set_current(&loop);
    }
    ~IterationScope() {
      loop.set_current(previous);
      loop.in_iteration_ = false;
    }
  } scope(*this);
  ++iterations_;
  for (auto& hook : pre_poll_hooks_) hook.second();

  // While coroutines are ready to run, poll for I/O only every few
  // iterations: an epoll_wait per bottom half would dominate the cost of
  // requests that complete without I/O (null-co, cache hits).
  epoll_event events[64];
  int n = 0;
  if (ready_.empty() || ++busy_iterations_ >= kPollEveryBusy) {
    busy_iterations_ = 0;
    n = epoll_wait(epfd_, events, 64, poll_timeout_ms(block));
  }
  for (int i = 0; i < n; ++i) {
    auto it = handlers_.find(events[i].data.fd);
    if (it == handlers_.end()) continue;
    auto handler = it->second;  // keeps it alive if the handler removes itself
    (*handler)(events[i].events);
  }
  run_timers();
  run_ready();
}

// Each stop() ends one run(): a stop() that arrives before run() starts
// (or between two runs) is kept and makes the next run() return at once.
void EventLoop::run() {
  while (!stop_.exchange(false, std::memory_order_acq_rel)) run_once(true);
}

void EventLoop::stop() {
  stop_.store(true, std::memory_order_release);
  post([] {});  // wake the loop if it is blocked in epoll_wait
}

}  // namespace coblk
