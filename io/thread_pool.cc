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

void ThreadPool::submit(std::function<void()> fn) {
  std::lock_guard<std::mutex> lock(mu_);
  jobs_.push_back(std::move(fn));
  // Threads are started on demand, up to max_threads_.
  if (idle_ == 0 && threads_.size() < max_threads_)
    threads_.emplace_back([this] { worker(); });
  else
    cv_.notify_one();
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
