// qemu-io's output helpers: the two-line I/O report, the -C machine format
// and the -v hex dump, byte-for-byte like qemu-io 7.2.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace coblk::tools {

// "read 65536/65536 bytes at offset 0\n64 KiB, 1 ops; 00.00 sec (...)\n", or
// with machine_format "bytes,ops,time,bytes/sec,ops/sec\n".
void PrintReport(const char* op, std::chrono::nanoseconds elapsed, int64_t offset,
                 int64_t count, int64_t total, int ops, bool machine_format);

// "00000000:  ab ab ...  ................" lines.
void DumpBuffer(const uint8_t* buf, int64_t offset, int64_t len);

// qemu-io's timestr: "00.00 sec", "0:00:01.25" (verbose or >= 1 s).
std::string TimeString(std::chrono::nanoseconds elapsed, bool verbose);

}  // namespace coblk::tools
