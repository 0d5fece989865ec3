#include "tools/io_report.h"

#include <cctype>
#include <cinttypes>
#include <cstdio>

#include "tools/human_size.h"

namespace coblk::tools {

namespace {

double Seconds(std::chrono::nanoseconds t) {
  return static_cast<double>(t.count() / 1000000000) +
         static_cast<double>(t.count() % 1000000000) / 1e9;
}

}  // namespace

std::string TimeString(std::chrono::nanoseconds elapsed, bool verbose) {
  const int64_t sec = elapsed.count() / 1000000000;
  const double frac = static_cast<double>(elapsed.count() % 1000000000) / 1e9;
  char buf[64];
  if (verbose || sec) {
    std::snprintf(buf, sizeof(buf), "%u:%02u:%05.2f", static_cast<unsigned>(sec / 3600),
                  static_cast<unsigned>((sec % 3600) / 60),
                  static_cast<double>(sec % 60) + frac);
  } else {
    std::snprintf(buf, sizeof(buf), "%05.2f sec", frac);
  }
  return buf;
}

void PrintReport(const char* op, std::chrono::nanoseconds elapsed, int64_t offset,
                 int64_t count, int64_t total, int ops, bool machine_format) {
  const std::string ts = TimeString(elapsed, machine_format);
  const double secs = Seconds(elapsed);
  if (!machine_format) {
    std::printf("%s %" PRId64 "/%" PRId64 " bytes at offset %" PRId64 "\n", op, total, count,
                offset);
    std::printf("%s, %d ops; %s (%s/sec and %.4f ops/sec)\n",
                IoSizeString(static_cast<double>(total)).c_str(), ops, ts.c_str(),
                IoSizeString(static_cast<double>(total) / secs).c_str(),
                static_cast<double>(ops) / secs);
  } else {
    std::printf("%" PRId64 ",%d,%s,%.3f,%.3f\n", total, ops, ts.c_str(),
                static_cast<double>(total) / secs, static_cast<double>(ops) / secs);
  }
}

void DumpBuffer(const uint8_t* buf, int64_t offset, int64_t len) {
  for (int64_t i = 0; i < len; i += 16) {
    std::printf("%08" PRIx64 ":  ", static_cast<uint64_t>(offset + i));
    int64_t n = len - i < 16 ? len - i : 16;
    for (int64_t j = 0; j < n; j++) std::printf("%02x ", buf[i + j]);
    std::printf(" ");
    for (int64_t j = 0; j < n; j++) std::putchar(std::isalnum(buf[i + j]) ? buf[i + j] : '.');
    std::printf("\n");
  }
}

}  // namespace coblk::tools
