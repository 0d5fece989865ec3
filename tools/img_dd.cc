// coblk-img dd: qemu-img 7.2's dd, operands, messages and semantics
// included:
//   - the output image is always created (format -O, raw by default), of
//     size min(input size, count*bs) - skip*bs, and every byte of that range
//     is written (the output is fully allocated, as with qemu-img);
//   - count counts from the start of the input, not from the skip point
//     (so bs=1M count=2 skip=1 copies one MiB), as qemu-img computes it;
//   - a skip past the end of the input warns "cannot skip to specified
//     offset", creates an empty output and succeeds.
// The copy goes through a buffer of a whole number of bs blocks (up to
// 1 MiB), which writes the same bytes as qemu-img's one block per request.
#include <getopt.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstring>
#include <string>

#include "block/block_graph.h"
#include "coroutine/sync_wait.h"
#include "io/aligned_buffer.h"
#include "tools/human_size.h"
#include "tools/img_commands.h"

namespace coblk::tools {

bool ImgCvtNum(const char* name, const std::string& value, int64_t min, int64_t max,
               int64_t* out) {
  Result<int64_t> v = ParseIoNumber(value);
  if (!v && v.error().errnum() != ERANGE) {
    ImgError("Invalid %s specified. You may use k, M, G, T, P or E suffixes for", name);
    ImgError("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.");
    return false;
  }
  if (!v || *v < min || *v > max) {
    ImgError("Invalid %s specified. Must be between %lld and %lld.", name,
             static_cast<long long>(min), static_cast<long long>(max));
    return false;
  }
  *out = *v;
  return true;
}

int ImgDd(int argc, char** argv) {
  enum { kImageOpts = 256 };
  static const option kLong[] = {
      {"help", no_argument, nullptr, 'h'},
      {"image-opts", no_argument, nullptr, kImageOpts},
      {"force-share", no_argument, nullptr, 'U'},
      {nullptr, 0, nullptr, 0},
  };
  ImageSpec in;
  in.read_only = true;
  std::string out_fmt = "raw";
  optind = 0;
  opterr = 0;
  for (int c; (c = getopt_long(argc, argv, ":hf:O:U", kLong, nullptr)) != -1;) {
    switch (c) {
      case 'h': return ImgHelp();
      case 'f': in.format = optarg; break;
      case 'O': out_fmt = optarg; break;
      case 'U': in.force_share = true; break;
      case kImageOpts: in.image_opts = true; break;
      default: return ImgBadOption(c, argv);
    }
  }

  // Operands: name=value, the last of each name counting.
  int64_t bs = 512, count = 0, skip = 0;
  bool have_if = false, have_of = false, have_count = false, have_skip = false;
  std::string out_name;
  for (int i = optind; i < argc; i++) {
    const std::string arg = argv[i];
    const size_t eq = arg.find('=');
    const std::string key = arg.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : arg.substr(eq + 1);
    if (eq == std::string::npos) {
      ImgError("unrecognized operand %s", arg.c_str());
      return 1;
    }
    if (key == "bs") {
      if (!ImgCvtNum("bs", value, 1, INT_MAX, &bs)) return 1;
    } else if (key == "count") {
      if (!ImgCvtNum("count", value, 0, INT64_MAX, &count)) return 1;
      have_count = true;
    } else if (key == "skip") {
      if (!ImgCvtNum("skip", value, 0, INT64_MAX, &skip)) return 1;
      have_skip = true;
    } else if (key == "if") {
      in.filename = value;
      have_if = true;
    } else if (key == "of") {
      out_name = value;
      have_of = true;
    } else {
      ImgError("unrecognized operand %s", key.c_str());
      return 1;
    }
  }
  if (!have_if || !have_of) {
    ImgError("Must specify both input and output files");
    return 1;
  }

  auto src = ImgOpen(in);
  if (!src) return 1;
  EventLoop& loop = *src->loop;
  const BlockDriver* drv = FindFormatDriver(out_fmt);
  if (!drv) {
    ImgError("Unknown file format");
    return 1;
  }
  int64_t size = src->blk->size();
  if (have_count && count <= INT64_MAX / bs && size > count * bs) size = count * bs;
  // A skip past the input's end (or one that overflows) gives an empty output.
  const bool skip_past_end = have_skip && (skip > INT64_MAX / bs || size < skip * bs);
  Options create_opts;
  create_opts.set("size", std::to_string(skip_past_end ? 0 : size - skip * bs));
  if (Status st = sync_wait(loop, CreateImage(loop, out_fmt, out_name, create_opts)); !st) {
    ImgError("%s: error while creating output image: %s", out_name.c_str(),
             st.error().ToString().c_str());
    return 1;
  }
  ImageSpec out_spec;
  out_spec.filename = out_name;
  out_spec.format = out_fmt;
  out_spec.cache = "writeback";
  auto dst = OpenImage(loop, out_spec);
  if (!dst) {
    ImgError("Could not open '%s': %s", out_name.c_str(), dst.error().ToString().c_str());
    return 1;
  }
  BlockBackend& out = **dst;

  int64_t in_pos = 0;
  if (skip_past_end) {
    ImgError("%s: cannot skip to specified offset", in.filename.c_str());
    in_pos = size;
  } else {
    in_pos = skip * bs;
  }
  constexpr int64_t kMaxChunk = 1 << 20;
  const int64_t chunk = bs >= kMaxChunk ? bs : kMaxChunk / bs * bs;
  AlignedBuffer buf(static_cast<size_t>(std::min(chunk, std::max<int64_t>(size - in_pos, 1))));
  int ret = 0;
  for (int64_t out_pos = 0; in_pos < size;) {
    const int64_t bytes = std::min<int64_t>(static_cast<int64_t>(buf.size()), size - in_pos);
    if (Status st = sync_wait(loop, src->blk->co_read(in_pos, buf.data(), bytes)); !st) {
      ImgError("error while reading from input image file: %s",
               std::strerror(st.error().errnum()));
      ret = 1;
      break;
    }
    in_pos += bytes;
    if (Status st = sync_wait(loop, out.co_write(out_pos, buf.data(), bytes)); !st) {
      ImgError("error while writing to output image file: %s",
               std::strerror(st.error().errnum()));
      ret = 1;
      break;
    }
    out_pos += bytes;
  }
  if (Status st = out.close(); !st && ret == 0) {
    ImgError("%s", st.error().ToString().c_str());
    ret = 1;
  }
  return ret;
}

}  // namespace coblk::tools
