#include "drivers/vmdk/descriptor.h"

#include <algorithm>
#include <cinttypes>
#include <limits>

#include "drivers/vmdk/bytes.h"
#include "drivers/vmdk/layout.h"
#include "drivers/vmdk/strfmt.h"

namespace coblk::vmdk {

namespace {

constexpr uint64_t kMaxSectors =
    static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / 512;

bool IsSpace(char c) { return c == ' ' || c == '\t'; }

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (IsSpace(s.front()) || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (IsSpace(s.back()) || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// Text up to the first NUL (QEMU treats the buffer as a C string).
std::string_view UntilNul(std::string_view text) {
  size_t nul = text.find('\0');
  return nul == std::string_view::npos ? text : text.substr(0, nul);
}

// Splits off the next whitespace-separated token.
std::string_view NextToken(std::string_view& s) {
  size_t i = 0;
  while (i < s.size() && IsSpace(s[i])) ++i;
  size_t j = i;
  while (j < s.size() && !IsSpace(s[j])) ++j;
  std::string_view tok = s.substr(i, j - i);
  s.remove_prefix(j);
  return tok;
}

// Decimal without sign, bounded by `max`.
std::optional<uint64_t> ParseDecimal(std::string_view s, uint64_t max) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    const uint64_t d = static_cast<uint64_t>(c - '0');
    // v * 10 + d <= max, without wrapping when d > max.
    if (d > max || v > (max - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

// 1..8 hex digits, optional 0x prefix (what sscanf("%x") accepts in practice).
std::optional<uint32_t> ParseHex32(std::string_view s) {
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X'))
    s.remove_prefix(2);
  if (s.empty() || s.size() > 8) return std::nullopt;
  uint32_t v = 0;
  for (char c : s) {
    uint32_t d;
    if (c >= '0' && c <= '9') d = static_cast<uint32_t>(c - '0');
    else if (c >= 'a' && c <= 'f') d = static_cast<uint32_t>(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') d = static_cast<uint32_t>(c - 'A' + 10);
    else return std::nullopt;
    v = (v << 4) | d;
  }
  return v;
}

// "value" -> value; bare values are returned as is; a lone quote -> nullopt.
std::optional<std::string_view> Unquote(std::string_view v) {
  if (v.empty() || v.front() != '"') {
    if (v.find('"') != std::string_view::npos) return std::nullopt;
    return v;
  }
  if (v.size() < 2 || v.back() != '"') return std::nullopt;
  v = v.substr(1, v.size() - 2);
  if (v.find('"') != std::string_view::npos) return std::nullopt;
  return v;
}

std::optional<ExtentAccess> ParseAccess(std::string_view s) {
  if (s == "RW") return ExtentAccess::kReadWrite;
  if (s == "RDONLY") return ExtentAccess::kReadOnly;
  if (s == "NOACCESS") return ExtentAccess::kNoAccess;
  return std::nullopt;
}

std::optional<ExtentType> ParseType(std::string_view s) {
  if (s == "FLAT") return ExtentType::kFlat;
  if (s == "SPARSE") return ExtentType::kSparse;
  if (s == "ZERO") return ExtentType::kZero;
  if (s == "VMFS") return ExtentType::kVmfs;
  if (s == "VMFSSPARSE") return ExtentType::kVmfsSparse;
  if (s == "SESPARSE") return ExtentType::kSeSparse;
  return std::nullopt;
}

std::unexpected<Error> InvalidExtentLine(std::string_view line) {
  return MakeError(EINVAL, "Invalid extent line: " + std::string(line));
}

// "<ACCESS> <sectors> <TYPE> ["<file>" [<offset>]]"; `line` is trimmed.
Result<ExtentLine> ParseExtentLine(std::string_view line) {
  std::string_view rest = line;
  ExtentLine e;
  e.access = *ParseAccess(NextToken(rest));
  auto sectors = ParseDecimal(NextToken(rest), kMaxSectors);
  if (!sectors) return InvalidExtentLine(line);
  e.sectors = *sectors;
  std::string_view type_name = NextToken(rest);
  if (type_name.empty()) return InvalidExtentLine(line);
  auto type = ParseType(type_name);
  if (!type)
    return MakeError(ENOTSUP, "Unsupported extent type '" +
                                  std::string(type_name) + "'");
  e.type = *type;

  rest = Trim(rest);
  bool has_name = false;
  if (!rest.empty()) {
    if (rest.front() != '"') return InvalidExtentLine(line);
    size_t close = rest.find('"', 1);
    if (close == std::string_view::npos) return InvalidExtentLine(line);
    e.filename = std::string(rest.substr(1, close - 1));
    has_name = true;
    rest.remove_prefix(close + 1);
    if (!rest.empty() && !IsSpace(rest.front())) return InvalidExtentLine(line);
  }
  std::string_view offset_tok = NextToken(rest);
  if (!Trim(rest).empty()) return InvalidExtentLine(line);
  std::optional<uint64_t> offset;
  if (!offset_tok.empty()) {
    offset = ParseDecimal(offset_tok, kMaxSectors - e.sectors);
    if (!offset) return InvalidExtentLine(line);
  }

  if (e.type == ExtentType::kZero) {
    // VMware writes ZERO extents without a file name.
    if (offset) return InvalidExtentLine(line);
    if (has_name && e.filename.empty()) return InvalidExtentLine(line);
  } else {
    if (!has_name || e.filename.empty()) return InvalidExtentLine(line);
    if (e.type == ExtentType::kFlat) {
      if (!offset) return InvalidExtentLine(line);
      e.offset = *offset;
    } else if (offset) {
      // VMFS takes no offset (it is 0); sparse types have none either.
      return InvalidExtentLine(line);
    }
  }
  if (has_name) {
    auto ok = ValidateExtentFilename(e.filename, false);
    if (!ok) return std::unexpected(ok.error());
  }
  return e;
}

// Splits off the next line of `text`, trimmed.
std::string_view NextLine(std::string_view& text) {
  size_t nl = text.find('\n');
  std::string_view raw = text.substr(0, nl);
  text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
  return Trim(raw);
}

// An extent line starts with its access mode.
bool IsExtentLine(std::string_view line) {
  std::string_view probe = line;
  return ParseAccess(NextToken(probe)).has_value();
}

}  // namespace

const char* ExtentAccessName(ExtentAccess a) {
  switch (a) {
    case ExtentAccess::kReadWrite: return "RW";
    case ExtentAccess::kReadOnly: return "RDONLY";
    case ExtentAccess::kNoAccess: return "NOACCESS";
  }
  return "?";
}

const char* ExtentTypeName(ExtentType t) {
  switch (t) {
    case ExtentType::kFlat: return "FLAT";
    case ExtentType::kSparse: return "SPARSE";
    case ExtentType::kZero: return "ZERO";
    case ExtentType::kVmfs: return "VMFS";
    case ExtentType::kVmfsSparse: return "VMFSSPARSE";
    case ExtentType::kSeSparse: return "SESPARSE";
  }
  return "?";
}

namespace {

// What the parse does with extent lines.
enum class ExtentLines {
  kKeep,   // checked, counted and stored (ParseDescriptor's default)
  kCount,  // checked and counted only (an opener reads them one at a time)
  kSkip,   // ignored (an embedded descriptor's self-naming line)
};

Result<Descriptor> ParseDescriptorText(std::string_view text, ExtentLines extent_lines) {
  text = UntilNul(text);
  if (text.size() > kMaxDescriptorBytes)
    return MakeError(EFBIG, StrFormat("Descriptor too big: %zu bytes",
                                      text.size()));
  Descriptor d;
  bool have_cid = false, have_parent_cid = false;
  while (!text.empty()) {
    std::string_view line = NextLine(text);
    if (line.empty() || line.front() == '#') continue;

    if (IsExtentLine(line)) {
      if (extent_lines == ExtentLines::kSkip) continue;
      auto e = ParseExtentLine(line);
      if (!e) return std::unexpected(e.error());
      // QEMU skips empty extents (qemu-img writes "RW 0 SPARSE" for a
      // zero-sized image); keep them out of the extent list too.
      if (e->sectors == 0) continue;
      if (!CheckedAdd(d.total_sectors, e->sectors, &d.total_sectors) ||
          d.total_sectors > kMaxSectors)
        return MakeError(EFBIG, "Descriptor describes a disk that is too big");
      ++d.extent_count;
      if (extent_lines == ExtentLines::kKeep) d.extents.push_back(std::move(*e));
      continue;
    }

    size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;  // ignored, as in QEMU
    std::string_view key = Trim(line.substr(0, eq));
    std::string_view value = Trim(line.substr(eq + 1));
    if (key == "version") {
      if (d.version) continue;
      auto v = ParseDecimal(value, 1000000);
      if (!v)
        return MakeError(EINVAL, "Invalid descriptor version: " +
                                     std::string(value));
      d.version = static_cast<int>(*v);
    } else if (key == "CID" || key == "parentCID") {
      bool& seen = key == "CID" ? have_cid : have_parent_cid;
      if (seen) continue;  // QEMU uses the first occurrence
      auto v = ParseHex32(value);
      if (!v)
        return MakeError(EINVAL, "Invalid " + std::string(key) +
                                     " in descriptor: " + std::string(value));
      (key == "CID" ? d.cid : d.parent_cid) = *v;
      seen = true;
    } else if (key == "createType" || key == "parentFileNameHint") {
      auto v = Unquote(value);
      if (!v || v->empty()) {
        if (key == "createType")
          return MakeError(EINVAL, "invalid VMDK image descriptor");
        return MakeError(EINVAL, "Invalid parentFileNameHint in descriptor");
      }
      if (key == "createType") {
        if (d.create_type.empty()) d.create_type = std::string(*v);
      } else if (!d.parent_file_name_hint) {
        if (v->size() > kMaxExtentFileName)
          return MakeError(EINVAL, "parentFileNameHint too long");
        d.parent_file_name_hint = std::string(*v);
      }
    } else {
      auto v = Unquote(value);
      std::string val(v ? *v : value);
      if (key == "encoding") {
        if (!d.encoding) d.encoding = val;
      } else if (key.starts_with("ddb.")) {
        d.ddb.emplace_back(std::string(key), std::move(val));
      } else {
        d.other.emplace_back(std::string(key), std::move(val));
      }
    }
  }
  if (!have_cid) return MakeError(EINVAL, "Descriptor has no CID");
  if (!have_parent_cid) return MakeError(EINVAL, "Descriptor has no parentCID");
  return d;
}

}  // namespace

Result<Descriptor> ParseDescriptor(std::string_view text, bool keep_extent_lines) {
  return ParseDescriptorText(text, keep_extent_lines ? ExtentLines::kKeep : ExtentLines::kCount);
}

Result<Descriptor> ParseEmbeddedDescriptor(std::string_view text) {
  return ParseDescriptorText(text, ExtentLines::kSkip);
}

ExtentLineReader::ExtentLineReader(std::string_view text) : rest_(UntilNul(text)) {}

Result<std::optional<ExtentLine>> ExtentLineReader::next() {
  while (!rest_.empty()) {
    std::string_view line = NextLine(rest_);
    if (line.empty() || line.front() == '#' || !IsExtentLine(line)) continue;
    auto e = ParseExtentLine(line);
    if (!e) return std::unexpected(e.error());
    if (e->sectors == 0) continue;  // as ParseDescriptor
    return std::optional<ExtentLine>(std::move(*e));
  }
  return std::optional<ExtentLine>();
}

Status CheckDescriptorFileCreateType(std::string_view ct) {
  if (ct.empty()) return MakeError(EINVAL, "invalid VMDK image descriptor");
  for (const char* ok : {"monolithicFlat", "vmfs", "vmfsSparse", "seSparse",
                         "twoGbMaxExtentSparse", "twoGbMaxExtentFlat"}) {
    if (ct == ok) return OkStatus();
  }
  return MakeError(ENOTSUP,
                   "Unsupported image type '" + std::string(ct) + "'");
}

Status ValidateExtentFilename(std::string_view name, bool confine) {
  if (name.empty()) return MakeError(EINVAL, "Empty extent file name");
  if (name.find('\0') != std::string_view::npos)
    return MakeError(EINVAL, "Extent file name contains a NUL byte");
  if (name.size() > kMaxExtentFileName)
    return MakeError(ENAMETOOLONG, "Extent file name too long");
  const std::string quoted = "'" + std::string(name) + "'";
  if (name.starts_with("json:"))
    return MakeError(EINVAL, "Extent file name must not be a json: "
                             "specification: " + quoted);
  // QEMU's path_has_protocol(): a ':' before the first '/'.
  size_t sep = name.find_first_of(":/");
  if (sep != std::string_view::npos && name[sep] == ':')
    return MakeError(EINVAL, "Extent file name must be a plain path, not a "
                             "protocol: " + quoted);
  if (confine) {
    if (name.front() == '/')
      return MakeError(EACCES, "Extent file name must be relative to the "
                               "descriptor: " + quoted);
    std::string_view rest = name;
    while (true) {
      size_t slash = rest.find('/');
      if (rest.substr(0, slash) == "..")
        return MakeError(EACCES, "Extent file name must not leave the "
                                 "descriptor's directory: " + quoted);
      if (slash == std::string_view::npos) break;
      rest.remove_prefix(slash + 1);
    }
  }
  return OkStatus();
}

Result<std::string> ResolveExtentPath(std::string_view descriptor_path,
                                      std::string_view name) {
  if (!name.empty() && name.front() == '/') return std::string(name);
  if (descriptor_path.empty())
    return MakeError(EINVAL, "Cannot use relative extent paths with VMDK "
                             "descriptor file ''");
  size_t slash = descriptor_path.rfind('/');
  std::string out;
  if (slash != std::string_view::npos)
    out = std::string(descriptor_path.substr(0, slash + 1));
  out += name;
  return out;
}

Result<Subformat> ParseSubformat(std::string_view name) {
  for (Subformat f : {Subformat::kMonolithicSparse, Subformat::kMonolithicFlat,
                      Subformat::kTwoGbMaxExtentSparse,
                      Subformat::kTwoGbMaxExtentFlat,
                      Subformat::kStreamOptimized}) {
    if (name == SubformatName(f)) return f;
  }
  return MakeError(EINVAL, "Invalid parameter '" + std::string(name) + "'");
}

const char* SubformatName(Subformat f) {
  switch (f) {
    case Subformat::kMonolithicSparse: return "monolithicSparse";
    case Subformat::kMonolithicFlat: return "monolithicFlat";
    case Subformat::kTwoGbMaxExtentSparse: return "twoGbMaxExtentSparse";
    case Subformat::kTwoGbMaxExtentFlat: return "twoGbMaxExtentFlat";
    case Subformat::kStreamOptimized: return "streamOptimized";
  }
  return "?";
}

Result<AdapterType> ParseAdapterType(std::string_view name) {
  for (AdapterType a : {AdapterType::kIde, AdapterType::kBuslogic,
                        AdapterType::kLsilogic, AdapterType::kLegacyEsx}) {
    if (name == AdapterTypeName(a)) return a;
  }
  return MakeError(EINVAL, "Invalid parameter '" + std::string(name) + "'");
}

const char* AdapterTypeName(AdapterType a) {
  switch (a) {
    case AdapterType::kIde: return "ide";
    case AdapterType::kBuslogic: return "buslogic";
    case AdapterType::kLsilogic: return "lsilogic";
    case AdapterType::kLegacyEsx: return "legacyESX";
  }
  return "?";
}

Geometry ComputeGeometry(int64_t size_bytes, AdapterType adapter) {
  Geometry g;
  g.heads = adapter == AdapterType::kIde ? 16 : 255;
  g.sectors = 63;
  g.cylinders = size_bytes / static_cast<int64_t>(63 * g.heads * 512);
  return g;
}

Result<std::string> ResolveHwVersion(
    bool compat6, const std::optional<std::string>& hwversion) {
  if (compat6) {
    if (hwversion)
      return MakeError(EINVAL, "compat6 cannot be enabled with hwversion set");
    return std::string("6");
  }
  return hwversion ? *hwversion : std::string("4");
}

namespace {
bool SafeValue(std::string_view s) {
  return s.find_first_of(std::string_view("\"\n\r\0", 4)) ==
         std::string_view::npos;
}
std::string_view Basename(std::string_view p) {
  // g_path_get_basename: strip trailing slashes, keep the last component.
  while (p.size() > 1 && p.back() == '/') p.remove_suffix(1);
  size_t slash = p.rfind('/');
  return slash == std::string_view::npos || p.size() == 1 ? p
                                                           : p.substr(slash + 1);
}
}  // namespace

Result<std::string> GenerateDescriptor(const DescriptorSpec& s) {
  if (s.size_bytes < 0) return MakeError(EINVAL, "Invalid image size");
  if (!SafeValue(s.hw_version) ||
      (s.tools_version && !SafeValue(*s.tools_version)))
    return MakeError(EINVAL, "Invalid character in descriptor value");
  std::string parent_line;
  if (s.parent_file_name_hint) {
    // QEMU formats this line into a 4096-byte buffer.
    if (!SafeValue(*s.parent_file_name_hint) ||
        s.parent_file_name_hint->size() > kMaxExtentFileName - 22)
      return MakeError(EINVAL, "Invalid backing file name");
    parent_line = "parentFileNameHint=\"" + *s.parent_file_name_hint + "\"";
  }
  const bool flat = IsFlatSubformat(s.subformat);
  std::string extents;
  for (const auto& e : s.extents) {
    std::string_view base = Basename(e.filename);
    if (e.size_bytes < 0 || base.empty() || !SafeValue(base))
      return MakeError(EINVAL, "Invalid extent for descriptor");
    const int64_t sectors = e.size_bytes / 512 + (e.size_bytes % 512 != 0);
    extents += StrFormat(flat ? "RW %" PRId64 " FLAT \"%.*s\" 0\n"
                              : "RW %" PRId64 " SPARSE \"%.*s\"\n",
                         sectors, static_cast<int>(base.size()), base.data());
  }
  const Geometry g = ComputeGeometry(s.size_bytes, s.adapter);
  std::string out = StrFormat(
      "# Disk DescriptorFile\n"
      "version=1\n"
      "CID=%" PRIx32 "\n"
      "parentCID=%" PRIx32 "\n"
      "createType=\"%s\"\n",
      s.cid, s.parent_cid, SubformatName(s.subformat));
  out += parent_line;
  out += "\n# Extent description\n";
  out += extents;
  out += "\n# The Disk Data Base\n#DDB\n\n";
  out += "ddb.virtualHWVersion = \"" + s.hw_version + "\"\n";
  out += StrFormat("ddb.geometry.cylinders = \"%" PRId64 "\"\n"
                   "ddb.geometry.heads = \"%" PRIu32 "\"\n"
                   "ddb.geometry.sectors = \"63\"\n"
                   "ddb.adapterType = \"%s\"\n",
                   g.cylinders, g.heads, AdapterTypeName(s.adapter));
  if (s.tools_version)
    out += "ddb.toolsVersion = \"" + *s.tools_version + "\"\n";
  return out;
}

Result<std::string> SetCid(std::string_view text, CidField field,
                           uint32_t value) {
  text = UntilNul(text);
  if (text.size() > kMaxDescriptorBytes)
    return MakeError(EFBIG, StrFormat("Descriptor too big: %zu bytes",
                                      text.size()));
  const std::string_view want = field == CidField::kCid ? "CID" : "parentCID";
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    size_t end = nl == std::string_view::npos ? text.size() : nl;
    std::string_view line = text.substr(pos, end - pos);
    size_t eq = line.find('=');
    if (eq != std::string_view::npos && Trim(line.substr(0, eq)) == want &&
        line.front() != '#') {
      // Keep the line's own ending ("\r" before "\n") and everything else.
      const bool cr = !line.empty() && line.back() == '\r';
      std::string out(text.substr(0, pos));
      out += std::string(want) + "=" + StrFormat("%" PRIx32, value);
      if (cr) out += '\r';
      out += text.substr(end);
      return out;
    }
    pos = end + 1;
  }
  return MakeError(EINVAL, "Descriptor has no " + std::string(want) + " line");
}

std::string DescriptorFileBytes(std::string_view old_bytes, std::string_view text,
                                bool keep_tail) {
  constexpr size_t kSector = 512;
  auto round_up = [](size_t n) { return (n + kSector - 1) / kSector * kSector; };
  std::string out(std::max(round_up(old_bytes.size()), round_up(text.size() + 1)), '\0');
  if (keep_tail) out.replace(0, old_bytes.size(), old_bytes);
  out.replace(0, text.size(), text);
  out[text.size()] = '\0';
  return out;
}

}  // namespace coblk::vmdk
