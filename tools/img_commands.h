// coblk-img subcommands. Each takes the arguments after the subcommand name
// (argv[0] is the subcommand) and returns the process exit status. Adding a
// subcommand (convert, ...) is one function here and one table row in
// coblk_img_main.cc.
#pragma once

#include <memory>
#include <string>

#include "block/block_backend.h"
#include "block/block_driver.h"
#include "io/event_loop.h"
#include "tools/image_open.h"

namespace coblk::tools {

int ImgCreate(int argc, char** argv);
int ImgInfo(int argc, char** argv);
int ImgMap(int argc, char** argv);
int ImgCheck(int argc, char** argv);
int ImgBench(int argc, char** argv);
int ImgConvert(int argc, char** argv);
int ImgCompare(int argc, char** argv);
int ImgCommit(int argc, char** argv);
int ImgRebase(int argc, char** argv);
int ImgResize(int argc, char** argv);
int ImgDd(int argc, char** argv);
int ImgMeasure(int argc, char** argv);
int ImgSnapshot(int argc, char** argv);  // img_snapshot.cc, with amend and bitmap
int ImgAmend(int argc, char** argv);
int ImgBitmap(int argc, char** argv);

// The granularity (bytes) of QEMU's block status answers for node's chain
// down to (not including) base: a sparse VMDK layer answers one grain per
// call (vmdk_co_block_status), raw files and flat extents whole runs, so the
// smallest grain of the chain's VMDK layers; 0 when no layer limits the
// answers. compare and convert -p step their progress by it as qemu-img.
int64_t QemuStatusGrain(BlockNode* node, BlockNode* base = nullptr);

// qemu-img's cvtnum_full: a size with k/M/G/T/P/E suffixes in [min, max];
// prints qemu-img's "Invalid <name> specified. ..." message(s) and returns
// false otherwise. img_dd.cc.
bool ImgCvtNum(const char* name, const std::string& value, int64_t min, int64_t max,
               int64_t* out);

// `create -o help` / `convert -o help`: the driver's create options, sorted.
void PrintCreateHelp(const BlockDriver& drv);

// Parses "[-f fmt] [--output=human|json] [-U] [--image-opts] filename", the
// arguments info and map share, into a read-only spec, plus info's
// --backing-chain and map's --start-offset / --max-length where `extra`
// allows them. Prints the error as qemu-img does and returns 1 on bad
// arguments, 0 after -h/--help (help printed), -1 to go on.
struct QueryExtras {
  bool allow_backing_chain = false;
  bool allow_range = false;
  bool backing_chain = false;
  int64_t start_offset = 0;
  int64_t max_length = -1;  // -1: to the end
};
int ParseImageQueryArgs(int argc, char** argv, ImageSpec* spec, std::string* output,
                        QueryExtras* extra);

// "coblk-img: <message>" on stderr, like qemu-img's error_report.
void ImgError(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// qemu-img's error_exit: the message, then "Try 'coblk-img --help' for more
// information". Returns 1, the exit status.
int ImgErrorExit(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
// For getopt's ':' (missing argument) and '?' (unknown option) answers, with
// an option string that starts with ":" (after "+"): qemu-img's
// missing_argument / unrecognized_option. Returns 1.
int ImgBadOption(int c, char** argv);
// `coblk-img --help` (and every subcommand's -h/--help, as qemu-img): the
// usage of every command. Returns 0.
int ImgHelp();

// Creates the event loop and opens spec, reporting failures like qemu-img
// ("Could not open 'x': ..."). Returns nullptr after printing on failure.
struct OpenedImage {
  std::unique_ptr<EventLoop> loop;
  std::unique_ptr<BlockBackend> blk;
};
std::unique_ptr<OpenedImage> ImgOpen(const ImageSpec& spec, bool no_backing = false);

}  // namespace coblk::tools
