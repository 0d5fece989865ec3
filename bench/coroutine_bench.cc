// Costs of the coroutine runtime: creating and awaiting a Task, and CoMutex
// lock/unlock with and without contention.
#include <benchmark/benchmark.h>

#include "coroutine/co_mutex.h"
#include "coroutine/sleep.h"
#include "coroutine/sync_wait.h"
#include "coroutine/when_all.h"
#include "io/event_loop.h"

namespace coblk {
namespace {

Task<int> leaf(int v) { co_return v + 1; }

Task<long> await_many(int64_t n) {
  long sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += co_await leaf(static_cast<int>(i));
  co_return sum;
}

void BM_TaskCreateAndAwait(benchmark::State& state) {
  auto loop = EventLoop::Create().value();
  const int64_t batch = 10000;
  for (auto _ : state) benchmark::DoNotOptimize(sync_wait(*loop, await_many(batch)));
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_TaskCreateAndAwait);

Task<void> lock_unlock(CoMutex& m, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    co_await m.lock();
    m.unlock();
  }
}

void BM_CoMutexUncontended(benchmark::State& state) {
  auto loop = EventLoop::Create().value();
  CoMutex m;
  const int64_t batch = 10000;
  for (auto _ : state) sync_wait(*loop, lock_unlock(m, batch));
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(BM_CoMutexUncontended);

// Contended: N coroutines take turns. Each yields to the loop while holding
// the lock, so every other task queues and each unlock is a FIFO hand-off.
Task<void> contend(CoMutex& m, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    auto g = co_await m.scoped_lock();
    co_await co_yield_now();
  }
}

void BM_CoMutexContended(benchmark::State& state) {
  auto loop = EventLoop::Create().value();
  CoMutex m;
  const int tasks = static_cast<int>(state.range(0));
  const int64_t per_task = 1000;
  for (auto _ : state) {
    std::vector<Task<void>> ts;
    for (int i = 0; i < tasks; ++i) ts.push_back(contend(m, per_task));
    sync_wait(*loop, when_all(std::move(ts)));
  }
  state.SetItemsProcessed(state.iterations() * tasks * per_task);
}
BENCHMARK(BM_CoMutexContended)->Arg(2)->Arg(32);

}  // namespace
}  // namespace coblk

BENCHMARK_MAIN();
