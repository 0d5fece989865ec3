#include "coroutine/executor.h"

namespace coblk {

thread_local Executor* Executor::current_ = nullptr;

}  // namespace coblk
