// Size parsing and printing in the exact styles of qemu-io and qemu-img.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "util/status.h"

namespace coblk::tools {

// qemu-io's cvtnum: bytes with an optional k/M/G/T/P/E suffix (powers of
// 1024). Negative input and garbage are errors.
Result<int64_t> ParseIoNumber(std::string_view text);

// qemu-io's message for a ParseIoNumber failure:
// "Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- x".
std::string IoNumberError(std::string_view text);

// qemu-io's cvtstr: "64 KiB", "1.500 MiB", "512 bytes", "0 bytes".
std::string IoSizeString(double value);

// qemu-img's size_to_str: "1 GiB", "132 KiB", "1.5 GiB", "0 B".
std::string ImgSizeString(uint64_t value);

}  // namespace coblk::tools
