#include "tools/human_size.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "block/options.h"

namespace coblk::tools {

Result<int64_t> ParseIoNumber(std::string_view text) {
  if (text.empty() || text.front() == '-') return MakeError(EINVAL, IoNumberError(text));
  if (text.starts_with("0x") || text.starts_with("0X")) {
    // Hex is accepted without a suffix, as by qemu's strtosz.
    int64_t v = 0;
    auto [p, ec] = std::from_chars(text.data() + 2, text.data() + text.size(), v, 16);
    if (ec == std::errc::result_out_of_range && p == text.data() + text.size()) {
      return MakeError(ERANGE, "Parsing error: argument too large -- " + std::string(text));
    }
    if (ec != std::errc() || p != text.data() + text.size() || text.size() == 2) {
      return MakeError(EINVAL, IoNumberError(text));
    }
    return v;
  }
  Result<uint64_t> v = ParseSize(text);
  // qemu's cvtnum: -ERANGE past INT64_MAX, "argument too large".
  if ((!v && v.error().errnum() == ERANGE) || (v && *v > static_cast<uint64_t>(INT64_MAX))) {
    return MakeError(ERANGE, "Parsing error: argument too large -- " + std::string(text));
  }
  if (!v) return MakeError(EINVAL, IoNumberError(text));
  return static_cast<int64_t>(*v);
}

std::string IoNumberError(std::string_view text) {
  return "Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- " +
         std::string(text);
}

std::string IoSizeString(double value) {
  // Same thresholds and "%.3f, drop .000" rule as qemu-io's cvtstr.
  static const struct {
    int shift;
    const char* suffix;
  } kUnits[] = {{60, " EiB"}, {50, " PiB"}, {40, " TiB"},
                {30, " GiB"}, {20, " MiB"}, {10, " KiB"}};
  char buf[64];
  const char* suffix = " bytes";
  bool scaled = false;
  for (const auto& u : kUnits) {
    double unit = std::ldexp(1.0, u.shift);
    if (value >= unit) {
      std::snprintf(buf, sizeof(buf), "%.3f", value / unit);
      suffix = u.suffix;
      scaled = true;
      break;
    }
  }
  if (!scaled) std::snprintf(buf, sizeof(buf), "%f", value);
  std::string s(buf);
  size_t trim = s.find(".000");
  if (trim != std::string::npos) s.erase(trim);
  return s + suffix;
}

std::string ImgSizeString(uint64_t value) {
  // qemu's size_to_str: switch to the next unit once the number reaches 1000.
  static const char* kSuffixes[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
  int exp = 0;
  std::frexp(static_cast<double>(value) / (1000.0 / 1024.0), &exp);
  int i = (exp - 1) / 10;
  if (i < 0) i = 0;
  if (i > 6) i = 6;
  double div = std::ldexp(1.0, i * 10);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%0.3g %sB", static_cast<double>(value) / div, kSuffixes[i]);
  return buf;
}

}  // namespace coblk::tools
