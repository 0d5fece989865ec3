#include "drivers/blkdebug/rules.h"

#include <cerrno>
#include <cstdint>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string_view>

namespace coblk::blkdebug {

namespace {

Result<uint32_t> ParseIoTypes(const std::string& text) {
  static const std::map<std::string, uint32_t, std::less<>> kNames = {
      {"read", kIoRead},       {"write", kIoWrite},     {"write-zeroes", kIoWriteZeroes},
      {"discard", kIoDiscard}, {"flush", kIoFlush},     {"block-status", kIoBlockStatus},
  };
  uint32_t mask = 0;
  std::stringstream in(text);
  std::string name;
  while (std::getline(in, name, '|')) {
    auto it = kNames.find(name);
    if (it == kNames.end()) return MakeError(EINVAL, "Invalid I/O type '" + name + "'");
    mask |= it->second;
  }
  if (mask == 0) return MakeError(EINVAL, "Invalid I/O type '" + text + "'");
  return mask;
}

// Reads an integer option into *out; returns false (and sets *err) on error.
template <typename T>
bool GetInt(Options& o, const std::string& key, T def, T* out, Error* err) {
  auto v = o.get_int(key, static_cast<int64_t>(def));
  if (!v) {
    *err = v.error();
    return false;
  }
  *out = static_cast<T>(*v);
  return true;
}

bool GetBool(Options& o, const std::string& key, bool* out, Error* err) {
  auto v = o.get_bool(key, *out);
  if (!v) {
    *err = v.error();
    return false;
  }
  *out = *v;
  return true;
}

Status ParseInjectFields(Options& o, Rule& r) {
  Error err;
  int64_t sector = -1, after = 0;
  if (!GetInt(o, "errno", 5, &r.error, &err) || !GetBool(o, "once", &r.once, &err) ||
      !GetBool(o, "immediately", &r.immediately, &err) ||
      !GetInt<int64_t>(o, "sector", -1, &sector, &err) ||
      !GetInt<int64_t>(o, "after", 0, &after, &err))
    return std::unexpected(err);
  if (r.error < 0) return MakeError(EINVAL, "blkdebug: errno must not be negative");
  if (after < 0) return MakeError(EINVAL, "blkdebug: 'after' must not be negative");
  r.after = static_cast<uint64_t>(after);
  if (sector < -1 || sector > INT64_MAX / 512)
    return MakeError(EINVAL, "blkdebug: invalid sector " + std::to_string(sector));
  r.offset = sector == -1 ? -1 : sector * 512;
  if (o.has("offset")) {
    auto off = o.get_size("offset", 0);
    if (!off) return std::unexpected(off.error());
    if (*off > static_cast<uint64_t>(INT64_MAX)) return MakeError(EINVAL, "blkdebug: offset too large");
    r.offset = static_cast<int64_t>(*off);
  }
  auto len = o.get_size("length", 1);
  if (!len) return std::unexpected(len.error());
  if (*len == 0 || *len > static_cast<uint64_t>(INT64_MAX))
    return MakeError(EINVAL, "blkdebug: invalid length");
  r.length = static_cast<int64_t>(*len);
  if (auto types = o.take_string("iotype")) {
    auto mask = ParseIoTypes(*types);
    if (!mask) return std::unexpected(mask.error());
    r.iotypes = *mask;
  }
  return OkStatus();
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

}  // namespace

bool Rule::Matches(uint32_t iotype, int64_t req_offset, int64_t req_bytes) const {
  if (deleted || !(iotypes & iotype)) return false;
  if (offset == -1) return true;
  // Requests without a range (flush) only match "any offset" rules.
  return req_bytes > 0 && offset < req_offset + req_bytes && req_offset < offset + length;
}

Result<Rule> ParseRule(Rule::Action action, Options& opts) {
  Rule r;
  r.action = action;
  r.event = opts.take_string("event").value_or("");
  Error err;
  if (!GetInt<int64_t>(opts, "state", 0, &r.state, &err)) return std::unexpected(err);
  if (action == Rule::Action::kInjectError) {
    COBLK_RETURN_IF_ERROR(ParseInjectFields(opts, r));
  } else {
    if (r.event.empty()) return MakeError(EINVAL, "blkdebug: set-state rules need an event");
    if (!GetInt<int64_t>(opts, "new_state", 0, &r.new_state, &err)) return std::unexpected(err);
  }
  COBLK_RETURN_IF_ERROR(opts.check_all_consumed(
      action == Rule::Action::kInjectError ? "blkdebug inject-error" : "blkdebug set-state"));
  return r;
}

Status ParseInlineRules(Options& opts, std::list<Rule>& out) {
  static const std::pair<const char*, Rule::Action> kGroups[] = {
      {"inject-error.", Rule::Action::kInjectError},
      {"set-state.", Rule::Action::kSetState},
  };
  for (const auto& [prefix, action] : kGroups) {
    std::set<int64_t> indices;
    const std::string p = prefix;
    for (const auto& [key, value] : opts.values()) {
      if (!key.starts_with(p)) continue;
      const std::string rest = key.substr(p.size());
      const size_t dot = rest.find('.');
      const std::string index = rest.substr(0, dot);
      if (dot == std::string::npos || index.empty() ||
          index.find_first_not_of("0123456789") != std::string::npos || index.size() > 9)
        return MakeError(EINVAL, "blkdebug: invalid rule option '" + key + "'");
      indices.insert(std::stoll(index));
    }
    for (int64_t i : indices) {
      Options sub = opts.extract_prefix(p + std::to_string(i));
      auto rule = ParseRule(action, sub);
      if (!rule) return std::unexpected(rule.error());
      out.push_back(std::move(*rule));
    }
  }
  return OkStatus();
}

Status ReadConfigFile(const std::string& path, std::list<Rule>& out) {
  std::ifstream in(path);
  if (!in) return ErrnoError("Could not read blkdebug config file", errno ? errno : ENOENT);
  std::list<std::pair<Rule::Action, Options>> groups;
  std::string line;
  int lineno = 0;
  auto parse_error = [&](const std::string& why) {
    return MakeError(EINVAL, "Could not parse blkdebug config file: " + path + ":" +
                                 std::to_string(lineno) + ": " + why);
  };
  while (std::getline(in, line)) {
    ++lineno;
    std::string_view s = Trim(line);
    if (s.empty() || s.front() == '#') continue;
    if (s.front() == '[') {
      // "[inject-error]" or QEMU's "[inject-error "id"]"
      const size_t end = s.find_first_of(" ]");
      const std::string_view name = s.substr(1, end == std::string_view::npos ? 0 : end - 1);
      if (s.back() != ']') return parse_error("bad section header");
      if (name == "inject-error")
        groups.emplace_back(Rule::Action::kInjectError, Options());
      else if (name == "set-state")
        groups.emplace_back(Rule::Action::kSetState, Options());
      else
        return parse_error("unknown group '" + std::string(name) + "'");
      continue;
    }
    const size_t eq = s.find('=');
    if (eq == std::string_view::npos || groups.empty()) return parse_error("expected key = \"value\"");
    std::string key(Trim(s.substr(0, eq)));
    std::string_view value = Trim(s.substr(eq + 1));
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"')
      value = value.substr(1, value.size() - 2);
    groups.back().second.set(key, std::string(value));
  }
  for (auto& [action, opts] : groups) {
    if (action == Rule::Action::kInjectError && !opts.has("event"))
      return MakeError(EINVAL, "Could not parse blkdebug config file: missing event in " + path);
    auto rule = ParseRule(action, opts);
    if (!rule) return std::unexpected(rule.error().WithContext(path));
    out.push_back(std::move(*rule));
  }
  return OkStatus();
}

}  // namespace coblk::blkdebug
