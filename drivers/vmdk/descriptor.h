// VMDK descriptor text: parser, extent file name rules, generator and CID
// rewriting.
//
// Parsing is line based and never trusts the input: text stops at the first
// NUL (embedded descriptors are NUL padded) and is capped at
// kMaxDescriptorBytes; extent lines of any broken shape are "Invalid extent
// line: <line>"; unknown extent types are "Unsupported extent type '<t>'"
// (QEMU skips them silently). Unlike QEMU, ZERO extents and RDONLY /
// NOACCESS extents are kept; the opener decides what to do with them.
// Other unrecognised non-extent lines are ignored, as QEMU does.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/status.h"

namespace coblk::vmdk {

inline constexpr size_t kMaxExtentFileName = 4095;  // PATH_MAX - 1
inline constexpr uint32_t kNoParentCid = 0xffffffff;

enum class ExtentAccess { kReadWrite, kReadOnly, kNoAccess };
enum class ExtentType : uint8_t { kFlat, kSparse, kZero, kVmfs, kVmfsSparse, kSeSparse };

const char* ExtentAccessName(ExtentAccess a);  // "RW", "RDONLY", "NOACCESS"
const char* ExtentTypeName(ExtentType t);      // "FLAT", "SPARSE", ...
inline bool IsFlatType(ExtentType t) {
  return t == ExtentType::kFlat || t == ExtentType::kVmfs;
}

struct ExtentLine {
  ExtentAccess access = ExtentAccess::kReadWrite;
  uint64_t sectors = 0;    // > 0 (0-sector lines are dropped, as in QEMU)
  ExtentType type = ExtentType::kSparse;
  std::string filename;    // as written; empty only for a ZERO extent
  uint64_t offset = 0;     // start sector in the file (FLAT; VMFS = 0)
};

struct Descriptor {
  std::optional<int> version;
  uint32_t cid = 0;
  uint32_t parent_cid = kNoParentCid;
  std::string create_type;  // empty if absent (embedded descriptors)
  std::optional<std::string> parent_file_name_hint;
  std::optional<std::string> encoding;
  // ddb.* entries and any other key=value lines, in order, values unquoted.
  std::vector<std::pair<std::string, std::string>> ddb;
  std::vector<std::pair<std::string, std::string>> other;
  // Empty when parsed with keep_extent_lines = false (see ExtentLineReader).
  std::vector<ExtentLine> extents;
  size_t extent_count = 0;     // extent lines (kept or not)
  uint64_t total_sectors = 0;  // sum of extent sectors; * 512 fits in int64

  bool has_parent() const { return parent_cid != kNoParentCid; }
};

// Requires CID and parentCID lines (QEMU fails to open without them).
// Every extent line is checked; with keep_extent_lines = false they are only
// counted (extent_count), not stored: an opener then reads them one at a
// time with ExtentLineReader, so that it never holds a copy of each of the
// up to 100,000 lines of a 1 MiB descriptor.
Result<Descriptor> ParseDescriptor(std::string_view text, bool keep_extent_lines = true);

// The descriptor inside a monolithic sparse file (header's descriptor
// area): QEMU reads only its CIDs, parentFileNameHint and ddb entries there
// and never its extent line, which names the file itself and may not parse
// (qemu-img create writes RW 2048 SPARSE "a"b.vmdk" for a file named
// a"b.vmdk). Extent lines are skipped, not checked or counted.
Result<Descriptor> ParseEmbeddedDescriptor(std::string_view text);

// The extent lines of descriptor text, one at a time, in order: exactly the
// lines ParseDescriptor keeps (0-sector lines skipped), each parsed when it
// is asked for. Holds a view of `text`, which must outlive it.
class ExtentLineReader {
 public:
  explicit ExtentLineReader(std::string_view text);
  // The next extent line; nullopt after the last; the line's error if it
  // does not parse (not for text ParseDescriptor accepted).
  Result<std::optional<ExtentLine>> next();

 private:
  std::string_view rest_;
};

// A separate descriptor file must name one of the create types QEMU accepts
// there: monolithicFlat, vmfs, vmfsSparse, seSparse, twoGbMaxExtentSparse,
// twoGbMaxExtentFlat. Empty -> "invalid VMDK image descriptor", other ->
// "Unsupported image type '<t>'". (monolithicSparse and streamOptimized
// only occur embedded in a sparse file, where QEMU does not check it.)
Status CheckDescriptorFileCreateType(std::string_view create_type);

// Extent file names are plain paths: non-empty, no NUL, at most
// kMaxExtentFileName bytes, no "json:" and no "protocol:" prefix (a colon
// before the first '/'). With `confine_to_descriptor_dir`, absolute paths
// and ".." components are rejected as well.
Status ValidateExtentFilename(std::string_view name,
                              bool confine_to_descriptor_dir);

// QEMU's path_combine: absolute names stay, relative names are joined to
// the directory of `descriptor_path`. Relative names need a descriptor path.
Result<std::string> ResolveExtentPath(std::string_view descriptor_path,
                                      std::string_view name);

// ---------------------------------------------------------------------------
// Generation (vmdk_co_do_create's descriptor template).

enum class Subformat {
  kMonolithicSparse,
  kMonolithicFlat,
  kTwoGbMaxExtentSparse,
  kTwoGbMaxExtentFlat,
  kStreamOptimized,
};
Result<Subformat> ParseSubformat(std::string_view name);
const char* SubformatName(Subformat f);
inline bool IsFlatSubformat(Subformat f) {
  return f == Subformat::kMonolithicFlat || f == Subformat::kTwoGbMaxExtentFlat;
}
inline bool IsSplitSubformat(Subformat f) {
  return f == Subformat::kTwoGbMaxExtentFlat ||
         f == Subformat::kTwoGbMaxExtentSparse;
}

enum class AdapterType { kIde, kBuslogic, kLsilogic, kLegacyEsx };
Result<AdapterType> ParseAdapterType(std::string_view name);
const char* AdapterTypeName(AdapterType a);  // "ide", ..., "legacyESX"

struct Geometry {
  int64_t cylinders = 0;
  uint32_t heads = 0;
  uint32_t sectors = 0;
};
// heads = 16 for ide, 255 otherwise (what VMware uses); sectors = 63;
// cylinders = size / (63 * heads * 512), uncapped, as in QEMU.
Geometry ComputeGeometry(int64_t size_bytes, AdapterType adapter);

// hwversion option: compat6 -> "6" (error if hwversion is also set),
// default "4".
Result<std::string> ResolveHwVersion(bool compat6,
                                     const std::optional<std::string>& hwversion);

inline constexpr const char* kDefaultToolsVersion = "2147483647";

struct DescriptorSpec {
  uint32_t cid = 0;
  uint32_t parent_cid = kNoParentCid;
  Subformat subformat = Subformat::kMonolithicSparse;
  std::optional<std::string> parent_file_name_hint;  // the backing file
  struct Extent {
    int64_t size_bytes = 0;  // written as DIV_ROUND_UP(size, 512) sectors
    std::string filename;    // only the basename is written
  };
  std::vector<Extent> extents;
  std::string hw_version = "4";
  int64_t size_bytes = 0;  // virtual disk size, for the geometry
  AdapterType adapter = AdapterType::kIde;
  // QEMU >= 6.2 writes ddb.toolsVersion; nullopt omits the line.
  std::optional<std::string> tools_version = kDefaultToolsVersion;
};
// Byte-for-byte QEMU's template. Rejects values that would break the text
// (quotes, newlines, NULs) and negative sizes.
Result<std::string> GenerateDescriptor(const DescriptorSpec& spec);

// Rewrites the value of the "CID" or "parentCID" line (exact key match) as
// lowercase hex like QEMU, keeping every other byte. Works on text of any
// size up to kMaxDescriptorBytes, up to the first NUL; the caller checks the
// result still fits an embedded descriptor area.
enum class CidField { kCid, kParentCid };
Result<std::string> SetCid(std::string_view text, CidField field,
                           uint32_t value);

// The bytes a descriptor file is rewritten with to hold `text`, as QEMU's
// vmdk_write_cid lays them out: the old file (`old_bytes`) in whole 512-byte
// sectors, zeros past its end, with the new text and a NUL over its start.
// What follows the NUL stays as it was (keep_tail: QEMU leaves the old
// text's last bytes there when a CID gets shorter) or is zeroed. Unlike
// QEMU, a text that needs the sector's last byte or more gets one sector
// more instead of losing its last character.
std::string DescriptorFileBytes(std::string_view old_bytes, std::string_view text,
                                bool keep_tail);

}  // namespace coblk::vmdk
