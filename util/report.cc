#include "util/report.h"

#include <errno.h>

#include <atomic>
#include <cstdio>

namespace coblk {

namespace {

std::atomic<ErrorReporter> g_reporter{nullptr};

}  // namespace

void ReportError(const std::string& message) {
  if (ErrorReporter r = g_reporter.load(std::memory_order_acquire)) {
    r(message);
    return;
  }
  std::fflush(stdout);  // keep the order of a tool's output and its errors
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, message.c_str());
}

void SetErrorReporter(ErrorReporter reporter) {
  g_reporter.store(reporter, std::memory_order_release);
}

}  // namespace coblk
