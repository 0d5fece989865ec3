#include "tools/io_args.h"

#include <cinttypes>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "tools/human_size.h"

namespace coblk::tools {

int ParsePattern(const char* arg) {
  char* end = nullptr;
  long v = std::strtol(arg, &end, 0);
  if (v < 0 || v > UCHAR_MAX || *end != '\0') {
    std::printf("%s is not a valid pattern byte\n", arg);
    return -1;
  }
  return static_cast<int>(v);
}

bool ParseNum(const std::string& arg, int64_t* out) {
  Result<int64_t> v = ParseIoNumber(arg);
  if (!v) {
    std::printf("%s\n", v.error().message().c_str());
    return false;
  }
  *out = *v;
  return true;
}

bool CheckLength(int64_t count, const std::string& arg) {
  if (count <= kMaxRequestBytes) return true;
  std::printf("length cannot exceed %" PRId64 ", given %s\n", kMaxRequestBytes, arg.c_str());
  return false;
}

bool MakeIoVector(const std::vector<std::string>& lengths, int fill, IoVectorBuffer* out) {
  std::vector<int64_t> sizes;
  int64_t total = 0;
  for (const std::string& arg : lengths) {
    int64_t len = 0;
    if (!ParseNum(arg, &len)) return false;
    if (len > kMaxRequestBytes) {
      std::printf("Argument '%s' exceeds maximum size %" PRId64 "\n", arg.c_str(),
                  kMaxRequestBytes);
      return false;
    }
    if (total > kMaxRequestBytes - len) {
      std::printf("The total number of bytes exceed the maximum size %" PRId64 "\n",
                  kMaxRequestBytes);
      return false;
    }
    sizes.push_back(len);
    total += len;
  }
  out->buf = AlignedBuffer(static_cast<size_t>(total));
  std::memset(out->buf.data(), fill, out->buf.size());
  out->qiov.clear();
  size_t pos = 0;
  for (int64_t len : sizes) {
    if (len > 0) out->qiov.append(out->buf.data() + pos, static_cast<size_t>(len));
    pos += static_cast<size_t>(len);
  }
  out->size = total;
  return true;
}

}  // namespace coblk::tools
