#include "tools/info_dump.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
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

std::string JsonPretty(const nlohmann::ordered_json& j) { return QemuKeyOrder(j).dump(4); }

}  // namespace coblk::tools
