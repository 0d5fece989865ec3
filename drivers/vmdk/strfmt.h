// printf-style std::string formatting (g++ 12 has no <format>); used to keep
// error messages word-for-word identical to QEMU's format strings.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <string>

namespace coblk::vmdk {

[[gnu::format(printf, 1, 2)]] inline std::string StrFormat(const char* fmt,
                                                           ...) {
  va_list ap;
  va_start(ap, fmt);
  va_list ap2;
  va_copy(ap2, ap);
  int n = std::vsnprintf(nullptr, 0, fmt, ap);
  va_end(ap);
  std::string out;
  if (n > 0) {
    out.resize(static_cast<size_t>(n));
    std::vsnprintf(out.data(), out.size() + 1, fmt, ap2);
  }
  va_end(ap2);
  return out;
}

}  // namespace coblk::vmdk
