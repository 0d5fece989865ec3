#include "block/options.h"

#include <charconv>
#include <limits>

#include <nlohmann/json.hpp>

namespace coblk {

namespace {

// Splits "a=1,b=x,,y" at single commas; ",," stands for a literal comma.
std::vector<std::string> SplitElements(std::string_view text) {
  std::vector<std::string> out;
  std::string cur;
  for (size_t i = 0; i < text.size(); i++) {
    if (text[i] != ',') {
      cur += text[i];
    } else if (i + 1 < text.size() && text[i + 1] == ',') {
      cur += ',';
      i++;
    } else {
      out.push_back(std::move(cur));
      cur.clear();
    }
  }
  out.push_back(std::move(cur));
  return out;
}

std::string EscapeCommas(const std::string& s) {
  std::string out;
  for (char c : s) {
    out += c;
    if (c == ',') out += ',';
  }
  return out;
}

auto DuplicateKey(const std::string& key) {
  return MakeError(EINVAL, "Duplicate option '" + key + "'");
}

Status Flatten(const nlohmann::json& j, const std::string& prefix, Options& out) {
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      COBLK_RETURN_IF_ERROR(Flatten(v, prefix.empty() ? k : prefix + "." + k, out));
    }
  } else if (j.is_array()) {
    for (size_t i = 0; i < j.size(); i++) {
      COBLK_RETURN_IF_ERROR(Flatten(j[i], prefix + "." + std::to_string(i), out));
    }
  } else if (out.has(prefix)) {
    // {"file": {"filename": "a"}, "file.filename": "b"}
    return DuplicateKey(prefix);
  } else if (j.is_string()) {
    out.set(prefix, j.get<std::string>());
  } else if (j.is_boolean()) {
    out.set(prefix, j.get<bool>() ? "on" : "off");
  } else if (j.is_number_integer()) {
    out.set(prefix, j.is_number_unsigned() ? std::to_string(j.get<uint64_t>())
                                           : std::to_string(j.get<int64_t>()));
  } else if (j.is_number()) {
    out.set(prefix, j.dump());
  } else if (j.is_null() && (prefix == "backing" || prefix.ends_with(".backing"))) {
    out.set(prefix, "null");  // QEMU's "backing": null, no backing file
  } else {
    return MakeError(EINVAL, "Invalid JSON value for option '" + prefix + "'");
  }
  return OkStatus();
}

// Parses a whole signed decimal or 0x-hex integer.
std::optional<int64_t> ParseInt(std::string_view s) {
  bool neg = !s.empty() && s[0] == '-';
  if (neg) s.remove_prefix(1);
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s.remove_prefix(2);
  }
  uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (s.empty() || ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  const uint64_t max = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (v > max + (neg ? 1 : 0)) return std::nullopt;
  if (neg) return v == max + 1 ? std::numeric_limits<int64_t>::min() : -static_cast<int64_t>(v);
  return static_cast<int64_t>(v);
}

int SuffixShift(char c) {
  switch (c) {
    case 'b': case 'B': return 0;
    case 'k': case 'K': return 10;
    case 'm': case 'M': return 20;
    case 'g': case 'G': return 30;
    case 't': case 'T': return 40;
    case 'p': case 'P': return 50;
    case 'e': case 'E': return 60;
    default: return -1;
  }
}

}  // namespace

Result<Options> Options::Parse(std::string_view text, std::string_view implied_key) {
  Options opts;
  if (text.empty()) return opts;
  std::vector<std::string> elems = SplitElements(text);
  for (size_t i = 0; i < elems.size(); i++) {
    const std::string& e = elems[i];
    size_t eq = e.find('=');
    if (eq == std::string::npos) {
      if (i == 0 && !implied_key.empty()) {
        opts.set(std::string(implied_key), e);
        continue;
      }
      if (e.empty()) return MakeError(EINVAL, "Invalid parameter ''");
      // QemuOpts style: a bare "flag" means flag=on.
      if (opts.has(e)) return DuplicateKey(e);
      opts.set(e, "on");
      continue;
    }
    if (eq == 0) return MakeError(EINVAL, "Invalid parameter '" + e + "'");
    // A key given twice is an error, not "the last one wins".
    const std::string key = e.substr(0, eq);
    if (opts.has(key)) return DuplicateKey(key);
    opts.set(key, e.substr(eq + 1));
  }
  return opts;
}

Result<Options> Options::ParseJson(std::string_view json) {
  // nlohmann keeps the last of duplicate keys; QEMU's parser rejects them.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  auto note_keys = [&](int, nlohmann::json::parse_event_t event, nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (event == Event::object_start) {
      open_objects.emplace_back();
    } else if (event == Event::object_end) {
      if (!open_objects.empty()) open_objects.pop_back();
    } else if (event == Event::key && !open_objects.empty() && parsed.is_string()) {
      const std::string& k = parsed.get_ref<const std::string&>();
      if (!open_objects.back().insert(k).second && duplicate.empty()) duplicate = k;
    }
    return true;
  };
  nlohmann::json j = nlohmann::json::parse(json, note_keys, /*allow_exceptions=*/false);
  if (j.is_discarded()) return MakeError(EINVAL, "Could not parse the JSON options");
  if (!duplicate.empty()) return DuplicateKey(duplicate);
  if (!j.is_object()) return MakeError(EINVAL, "Invalid JSON object given");
  Options opts;
  COBLK_RETURN_IF_ERROR(Flatten(j, "", opts));
  return opts;
}

void Options::set_default(const std::string& key, std::string value) {
  if (!has(key)) values_[key] = std::move(value);
}

std::optional<std::string> Options::take_string(const std::string& key) {
  auto it = values_.find(key);
  if (it == values_.end()) return std::nullopt;
  consumed_.insert(key);
  return it->second;
}

std::string Options::get_string(const std::string& key, const std::string& def) {
  return take_string(key).value_or(def);
}

Result<bool> Options::get_bool(const std::string& key, bool def) {
  std::optional<std::string> v = take_string(key);
  if (!v) return def;
  if (*v == "on" || *v == "yes" || *v == "true" || *v == "y") return true;
  if (*v == "off" || *v == "no" || *v == "false" || *v == "n") return false;
  return MakeError(EINVAL, "Parameter '" + key + "' expects 'on' or 'off'");
}

Result<int64_t> Options::get_int(const std::string& key, int64_t def) {
  std::optional<std::string> v = take_string(key);
  if (!v) return def;
  std::optional<int64_t> n = ParseInt(*v);
  if (!n) return MakeError(EINVAL, "Parameter '" + key + "' expects a number");
  return *n;
}

Result<uint64_t> Options::get_size(const std::string& key, uint64_t def) {
  std::optional<std::string> v = take_string(key);
  if (!v) return def;
  Result<uint64_t> n = ParseSize(*v);
  if (!n) {
    return MakeError(EINVAL, "Parameter '" + key +
                                 "' expects a non-negative number below 2^64");
  }
  return *n;
}

std::optional<std::string> Options::peek(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) return std::nullopt;
  return it->second;
}

Options Options::extract_prefix(const std::string& prefix) {
  Options sub;
  const std::string dotted = prefix + ".";
  for (auto it = values_.lower_bound(dotted);
       it != values_.end() && it->first.starts_with(dotted);) {
    sub.set(it->first.substr(dotted.size()), it->second);
    consumed_.erase(it->first);
    it = values_.erase(it);
  }
  return sub;
}

bool Options::has_prefix(const std::string& prefix) const {
  const std::string dotted = prefix + ".";
  auto it = values_.lower_bound(dotted);
  return it != values_.end() && it->first.starts_with(dotted);
}

void Options::rename_prefix(const std::string& from, const std::string& to) {
  Options moved = extract_prefix(from);
  for (const auto& [k, v] : moved.values()) set(to + "." + k, v);
}

std::vector<std::string> Options::unconsumed() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : values_) {
    if (!consumed_.contains(k)) out.push_back(k);
  }
  return out;
}

Status Options::check_all_consumed(const std::string& what) const {
  std::vector<std::string> left = unconsumed();
  if (left.empty()) return OkStatus();
  return MakeError(EINVAL, what + " does not support the option '" + left.front() + "'");
}

std::string Options::ToString() const {
  std::string out;
  for (const auto& [k, v] : values_) {
    if (!out.empty()) out += ',';
    out += EscapeCommas(k) + "=" + EscapeCommas(v);
  }
  return out;
}

Result<uint64_t> ParseSize(std::string_view text) {
  auto invalid = [&] {
    return MakeError(EINVAL, "Invalid size '" + std::string(text) + "'");
  };
  size_t i = 0;
  uint64_t whole = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    uint64_t d = static_cast<uint64_t>(text[i] - '0');
    if (whole > (std::numeric_limits<uint64_t>::max() - d) / 10) {
      return MakeError(ERANGE, "Size '" + std::string(text) + "' is too large");
    }
    whole = whole * 10 + d;
    i++;
  }
  if (i == 0) return invalid();
  // Optional fraction, meaningful only with a unit ("1.5G").
  std::string_view frac;
  if (i < text.size() && text[i] == '.') {
    size_t start = ++i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') i++;
    frac = text.substr(start, i - start);
    if (frac.empty()) return invalid();
  }
  int shift = 0;
  if (i < text.size()) {
    shift = SuffixShift(text[i++]);
    if (shift < 0) return invalid();
    // "64kB": an optional trailing B after a unit.
    if (shift > 0 && i < text.size() && (text[i] == 'B' || text[i] == 'b')) i++;
  }
  if (i != text.size()) return invalid();
  if (!frac.empty() && shift == 0) return invalid();

  unsigned __int128 value = static_cast<unsigned __int128>(whole) << shift;
  if (!frac.empty()) {
    // frac * 2^shift, rounded down; at most 18 significant digits matter.
    unsigned __int128 num = 0, den = 1;
    for (size_t k = 0; k < frac.size() && k < 18; k++) {
      num = num * 10 + static_cast<unsigned>(frac[k] - '0');
      den *= 10;
    }
    value += (num << shift) / den;
  }
  if (value > std::numeric_limits<uint64_t>::max()) {
    return MakeError(ERANGE, "Size '" + std::string(text) + "' is too large");
  }
  return static_cast<uint64_t>(value);
}

}  // namespace coblk
