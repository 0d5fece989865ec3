// Options: QEMU-style flat dotted keys ("file.filename=x.img").
//
// Parsed from "k=v,k2=v2" strings (",," escapes a comma, as in QEMU), from
// json:{...} pseudo-filenames (nested objects flattened into dotted keys), or
// built in code. Every key read is marked consumed; after a driver has opened,
// the keys nobody consumed are reported as errors naming the key.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "util/status.h"

namespace coblk {

class Options {
 public:
  Options() = default;

  // "driver=raw,file.filename=a.img". A first element without '=' is taken
  // as implied_key (e.g. "filename") when implied_key is non-empty.
  static Result<Options> Parse(std::string_view text, std::string_view implied_key = {});
  // json:{"driver":"raw","file":{"driver":"file","filename":"x"}}
  // (text without the "json:" prefix).
  static Result<Options> ParseJson(std::string_view json);

  bool has(const std::string& key) const { return values_.contains(key); }
  bool empty() const { return values_.empty(); }
  void set(const std::string& key, std::string value) { values_[key] = std::move(value); }
  // Sets key only if absent.
  void set_default(const std::string& key, std::string value);
  void erase(const std::string& key) { values_.erase(key); }

  // Typed getters mark the key consumed. Ill-typed values are errors naming
  // the key. Absent keys give the default.
  std::optional<std::string> take_string(const std::string& key);
  std::string get_string(const std::string& key, const std::string& def = {});
  Result<bool> get_bool(const std::string& key, bool def);         // on/off/true/false
  Result<int64_t> get_int(const std::string& key, int64_t def);
  Result<uint64_t> get_size(const std::string& key, uint64_t def); // 1M, 64k, 2G ...
  // Reads without consuming.
  std::optional<std::string> peek(const std::string& key) const;

  // The sub-options under "prefix." with the prefix removed; those keys are
  // consumed from this object (they belong to the child now).
  Options extract_prefix(const std::string& prefix);
  bool has_prefix(const std::string& prefix) const;
  // Moves every key under "from." to "to." (an alias such as blkdebug's
  // "image." for "file.").
  void rename_prefix(const std::string& from, const std::string& to);

  // Keys not consumed yet.
  std::vector<std::string> unconsumed() const;
  // Error "<what> does not support the option '<key>'" for the first
  // unconsumed key, if any.
  Status check_all_consumed(const std::string& what) const;

  const std::map<std::string, std::string>& values() const { return values_; }
  std::string ToString() const;  // k=v,k=v with commas escaped

 private:
  std::map<std::string, std::string> values_;
  std::set<std::string> consumed_;
};

// The value of a "backing" option that means "no backing file": empty
// (coblk's and QEMU's old spelling) or "null" (QEMU's: "backing": null in
// JSON, backing=null with -blockdev).
inline bool IsNoBackingValue(const std::string& v) { return v.empty() || v == "null"; }

// Parses sizes the way qemu-img does: plain bytes or a k/K, M, G, T, P, E
// suffix (powers of 1024), optional "B". Rejects overflow and garbage.
Result<uint64_t> ParseSize(std::string_view text);

}  // namespace coblk
