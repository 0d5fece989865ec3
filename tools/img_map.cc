// coblk-img map: qemu-img map's human and JSON output, walking the backing
// chain layer by layer to report each extent's depth.
#include <getopt.h>

#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <string>

#include "coroutine/sync_wait.h"
#include "tools/img_commands.h"

namespace coblk::tools {

namespace {

struct MapEntry {
  int64_t start = 0;
  int64_t length = 0;
  bool data = false;
  bool zero = false;
  bool present = false;
  bool has_offset = false;
  int64_t offset = 0;
  int64_t depth = 0;
  std::string filename;  // empty: none
};

// qemu-img's get_block_status: the first layer that says data or zero wins.
Task<Result<MapEntry>> GetBlockStatus(BlockNode* node, int64_t offset, int64_t bytes) {
  int64_t depth = 0;
  BlockStatus st;
  for (;;) {
    Result<BlockStatus> r = co_await node->block_status(true, offset, bytes);
    if (!r) co_return std::unexpected(r.error());
    st = *r;
    if (st.pnum <= 0) co_return MakeError(EIO, "block status made no progress");
    bytes = st.pnum;
    if (st.status & (kStatusZero | kStatusData)) break;
    node = node->backing();
    if (!node) {
      st.status = 0;
      break;
    }
    depth++;
  }
  MapEntry e;
  e.start = offset;
  e.length = bytes;
  e.data = st.status & kStatusData;
  e.zero = st.status & kStatusZero;
  e.present = st.status & kStatusAllocated;
  e.has_offset = st.status & kStatusOffsetValid;
  e.offset = st.map;
  e.depth = depth;
  if (st.file && e.has_offset) e.filename = st.file->filename();
  co_return e;
}

bool Mergeable(const MapEntry& a, const MapEntry& b) {
  if (a.length == 0) return false;
  if (a.zero != b.zero || a.data != b.data || a.depth != b.depth || a.present != b.present ||
      a.filename.empty() != b.filename.empty() || a.has_offset != b.has_offset) {
    return false;
  }
  if (a.filename != b.filename) return false;
  if (a.has_offset && a.offset + a.length != b.offset) return false;
  return true;
}

// Output is collected here and printed at the end, so a failure midway
// leaves no partial JSON document on stdout.
std::string g_out;

void Out(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void Out(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  int n = std::vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n > 0) g_out.append(buf, std::min<size_t>(static_cast<size_t>(n), sizeof buf - 1));
}

bool DumpEntry(bool json, const MapEntry& e, MapEntry* next) {
  if (json) {
    Out("{ \"start\": %" PRId64 ", \"length\": %" PRId64 ", \"depth\": %" PRId64
                ", \"present\": %s, \"zero\": %s, \"data\": %s",
                e.start, e.length, e.depth, e.present ? "true" : "false",
                e.zero ? "true" : "false", e.data ? "true" : "false");
    if (e.has_offset) Out(", \"offset\": %" PRId64, e.offset);
    Out("}");
    if (next) Out(",\n");
    return true;
  }
  if (e.data && !e.has_offset) {
    std::fputs(g_out.c_str(), stdout);
    g_out.clear();
    ImgError("File contains external, encrypted or compressed clusters.");
    return false;
  }
  if (e.data && !e.zero) {
    Out("%#-16" PRIx64 "%#-16" PRIx64 "%#-16" PRIx64 "%s\n",
                static_cast<uint64_t>(e.start), static_cast<uint64_t>(e.length),
                static_cast<uint64_t>(e.offset), e.filename.c_str());
  }
  // The human format ignores 0 vs ZERO vs ZERO|DATA; merge more.
  if (next && (!next->data || next->zero)) {
    next->data = false;
    next->zero = true;
  }
  return true;
}

}  // namespace

int ImgMap(int argc, char** argv) {
  ImageSpec spec;
  std::string output;
  QueryExtras extra;
  extra.allow_range = true;
  // qemu-img map has no -T: it always reads through the page cache, where
  // a file's request alignment is 1, so a file whose size is not a multiple
  // of 512 maps as data up to its last byte and zeroes after it. With
  // O_DIRECT the last sector (or 4 KiB) would be one data range.
  spec.cache = "writeback";
  if (int r = ParseImageQueryArgs(argc, argv, &spec, &output, &extra); r >= 0) return r;
  auto img = ImgOpen(spec);
  if (!img) return 1;
  const bool json = output == "json";
  BlockNode* root = &img->blk->node();
  int64_t length = root->size();
  if (extra.max_length != -1) {
    length = std::min(extra.start_offset + extra.max_length, length);  // no overflow: see above
  }

  g_out.clear();
  if (json) {
    Out("[");
  } else {
    Out("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
  }
  // Human output keeps what was found before an error (as qemu-img prints
  // it as it goes); JSON is all or nothing.
  auto fail = [&] {
    if (!json) std::fputs(g_out.c_str(), stdout);
    return 1;
  };
  MapEntry curr;
  curr.start = extra.start_offset;
  while (curr.start + curr.length < length) {
    const int64_t offset = curr.start + curr.length;
    // qemu-img probes 1 GiB at a time; asking for the rest of the disk
    // prints the same (merged) entries, and a disk of exabytes of ZERO
    // extents or table-less directory entries takes a few calls, not 2^33.
    const int64_t n = length - offset;
    Result<MapEntry> next = sync_wait(*img->loop, GetBlockStatus(root, offset, n));
    if (!next) {
      fail();
      ImgError("Could not read file metadata: %s", std::strerror(next.error().errnum()));
      return 1;
    }
    if (Mergeable(curr, *next)) {
      curr.length += next->length;
      continue;
    }
    if (curr.length > 0 && !DumpEntry(json, curr, &*next)) return fail();
    curr = *next;
  }
  if (!DumpEntry(json, curr, nullptr)) return fail();
  if (json) Out("]\n");
  std::fputs(g_out.c_str(), stdout);
  return 0;
}

}  // namespace coblk::tools
