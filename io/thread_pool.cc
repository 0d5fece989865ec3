#include "io/thread_pool.h"

namespace coblk {

ThreadPool::ThreadPool(unsigned max_threads)
    : max_threads_(max_threads == 0 ? 1 : max_threads) {}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) t.join();
}

// idle_ counts the workers waiting on cv_; a woken worker leaves it only
// when it runs again, after taking its job off jobs_. So every queued job
// beyond idle_ has no worker coming for it: start a thread for it (up to
// max_threads_). Comparing idle_ with zero instead woke the same sleeping
// worker for a whole burst and never started more threads.
void ThreadPool::submit(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  jobs_.push_back(std::move(fn));
  if (jobs_.size() > idle_ && threads_.size() < max_threads_)
    threads_.emplace_back([this] { worker(); });
  else
    cv_.notify_one();
}

unsigned ThreadPool::idle_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return idle_;
}

unsigned ThreadPool::thread_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<unsigned>(threads_.size());
}

void ThreadPool::worker() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    ++idle_;
    cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
    --idle_;
    if (jobs_.empty()) return;  // stopping and drained
    auto job = std::move(jobs_.front());
    jobs_.pop_front();
    lock.unlock();
    job();
    lock.lock();
  }
}

ThreadPool& default_thread_pool() {
  static ThreadPool pool(16);
  return pool;
}

}  // namespace coblk
