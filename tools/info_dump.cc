#include "tools/info_dump.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <string_view>
#include <vector>

namespace coblk::tools {

namespace {

std::string HumanKey(std::string key) {
  for (char& c : key) {
    if (c == '-') c = ' ';
  }
  return key;
}

void PrintKey(int indentation, const std::string& key, bool composite) {
  std::printf("%*s%s:%c", indentation * 4, "", key.c_str(), composite ? '\n' : ' ');
}

nlohmann::ordered_json TypedValue(const std::string& v) {
  if (v == "true") return true;
  if (v == "false") return false;
  if (!v.empty() && (std::isdigit(static_cast<unsigned char>(v[0])) || v[0] == '-')) {
    int64_t i = 0;
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), i);
    if (ec == std::errc() && p == v.data() + v.size()) return i;
    uint64_t u = 0;
    auto [pu, ecu] = std::from_chars(v.data(), v.data() + v.size(), u);
    if (ecu == std::errc() && pu == v.data() + v.size()) return u;
  }
  return v;
}

}  // namespace

void DumpInfoTree(const InfoTree& tree, int indentation) {
  if (tree.is_list) {
    int i = 0;
    for (const auto& [name, child] : tree.children) {
      (void)name;
      PrintKey(indentation, "[" + std::to_string(i++) + "]", true);
      DumpInfoTree(child, indentation + 1);
    }
    for (const auto& [name, value] : tree.values) {
      (void)name;
      PrintKey(indentation, "[" + std::to_string(i++) + "]", false);
      std::printf("%s\n", value.c_str());
    }
    return;
  }
  for (const auto& [key, value] : tree.values) {
    PrintKey(indentation, HumanKey(key), false);
    std::printf("%s\n", value.c_str());
  }
  for (const auto& [key, child] : tree.children) {
    PrintKey(indentation, HumanKey(key), true);
    DumpInfoTree(child, indentation + 1);
  }
}

nlohmann::ordered_json InfoTreeToJson(const InfoTree& tree) {
  if (tree.is_list) {
    nlohmann::ordered_json arr = nlohmann::ordered_json::array();
    for (const auto& [name, child] : tree.children) arr.push_back(InfoTreeToJson(child));
    for (const auto& [name, value] : tree.values) arr.push_back(TypedValue(value));
    return arr;
  }
  nlohmann::ordered_json obj = nlohmann::ordered_json::object();
  for (const auto& [key, value] : tree.values) obj[key] = TypedValue(value);
  for (const auto& [key, child] : tree.children) obj[key] = InfoTreeToJson(child);
  return obj;
}

namespace {

// QEMU's QDict hashes keys into 512 buckets (qdict.c's tdb_hash) and its
// JSON writer walks the buckets in order, newest entry first within one.
unsigned QdictBucket(const std::string& key) {
  uint32_t value = 0x238F13AFu * static_cast<uint32_t>(key.size());
  for (size_t i = 0; i < key.size(); ++i) {
    value += static_cast<uint32_t>(static_cast<unsigned char>(key[i])) << (i * 5 % 24);
  }
  return (1103515243u * value + 12345u) % 512u;
}

}  // namespace

nlohmann::ordered_json QemuKeyOrder(const nlohmann::ordered_json& j) {
  if (j.is_array()) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (const auto& e : j) out.push_back(QemuKeyOrder(e));
    return out;
  }
  if (!j.is_object()) return j;
  struct Entry {
    unsigned bucket;
    size_t index;
    std::string key;
  };
  std::vector<Entry> keys;
  size_t index = 0;
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back({QdictBucket(it.key()), index++, it.key()});
  std::sort(keys.begin(), keys.end(), [](const Entry& a, const Entry& b) {
    if (a.bucket != b.bucket) return a.bucket < b.bucket;
    return a.index > b.index;  // QLIST_INSERT_HEAD: the newest first
  });
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (const Entry& e : keys) out[e.key] = QemuKeyOrder(j.at(e.key));
  return out;
}

namespace {

// One code point of QEMU's "modified UTF-8" (util/unicode.c's rules): the
// sequence at s[i] decoded, i advanced past it. Invalid sequences (a stray
// continuation byte, 0xFE/0xFF, a missing continuation byte, overlong
// forms other than C0 80 for U+0000, surrogates, noncharacters, beyond
// U+10FFFF) give -1; a sequence cut short consumes its lead byte and the
// continuation bytes present.
int32_t NextModUtf8(std::string_view s, size_t& i) {
  const auto byte = [&](size_t k) { return static_cast<uint32_t>(static_cast<unsigned char>(s[k])); };
  const uint32_t lead = byte(i++);
  if (lead < 0x80) return static_cast<int32_t>(lead);
  if (lead >= 0xFE || (lead & 0x40) == 0) return -1;
  int len = 0;
  for (uint32_t mask = 0x80; lead & mask; mask >>= 1) ++len;  // 2..6
  uint32_t cp = lead & ((0x80u >> len) - 1);
  for (int k = 1; k < len; ++k) {
    if (i >= s.size() || (byte(i) & 0xC0) != 0x80) return -1;
    cp = (cp << 6) | (byte(i++) & 0x3F);
  }
  static constexpr uint32_t kMinForLength[] = {0x80, 0x800, 0x10000, 0x200000, 0x4000000};
  const bool noncharacter = (cp >= 0xFDD0 && cp <= 0xFDEF) || (cp & 0xFFFE) == 0xFFFE;
  if (cp > 0x10FFFF || noncharacter || (cp >= 0xD800 && cp <= 0xDFFF)) return -1;
  if (cp < kMinForLength[len - 2] && !(cp == 0 && len == 2)) return -1;
  return static_cast<int32_t>(cp);
}

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// A string as QEMU's JSON writer reads it (a C string: up to the first NUL
// byte), made valid UTF-8 with every invalid sequence as U+FFFD. Names
// come from image files (extent names, backing hints), so any bytes occur;
// nlohmann's dump throws on invalid UTF-8.
std::string QemuJsonText(std::string_view s) {
  s = s.substr(0, s.find('\0'));
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const int32_t cp = NextModUtf8(s, i);
    AppendUtf8(out, cp < 0 ? 0xFFFD : static_cast<uint32_t>(cp));
  }
  return out;
}

nlohmann::ordered_json QemuJsonStrings(const nlohmann::ordered_json& j) {
  if (j.is_string()) return QemuJsonText(j.get_ref<const std::string&>());
  if (j.is_array()) {
    nlohmann::ordered_json out = nlohmann::ordered_json::array();
    for (const auto& e : j) out.push_back(QemuJsonStrings(e));
    return out;
  }
  if (!j.is_object()) return j;
  nlohmann::ordered_json out = nlohmann::ordered_json::object();
  for (auto it = j.begin(); it != j.end(); ++it) out[QemuJsonText(it.key())] = QemuJsonStrings(it.value());
  return out;
}

}  // namespace

// QEMU's writer escapes every code point outside 0x20..0x7E as \uXXXX with
// upper-case hex (a surrogate pair beyond the BMP), and its named escapes
// are nlohmann's: dump ASCII-only, then upper-case the \u escapes' digits.
std::string JsonPretty(const nlohmann::ordered_json& j) {
  std::string text = QemuKeyOrder(QemuJsonStrings(j)).dump(4, ' ', /*ensure_ascii=*/true);
  for (size_t i = 0; i + 1 < text.size(); ++i) {
    if (text[i] != '\\') continue;
    if (text[i + 1] == 'u') {
      for (size_t k = i + 2; k < i + 6 && k < text.size(); ++k)
        text[k] = static_cast<char>(std::toupper(static_cast<unsigned char>(text[k])));
    }
    ++i;  // skip the escaped character ("\\" included)
  }
  return text;
}

}  // namespace coblk::tools
