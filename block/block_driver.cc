#include "block/block_driver.h"

#include <cstdlib>

#include <dlfcn.h>

#include <cstdio>
#include <map>
#include <mutex>

namespace coblk {

namespace {

// Drivers are registered once and never removed, so the raw pointers handed
// out stay valid for the life of the process.
struct Registry {
  std::mutex mu;
  std::vector<std::unique_ptr<BlockDriver>> drivers;  // registration order
  std::map<std::string, const BlockDriver*, std::less<>> by_format;
  std::map<std::string, const BlockDriver*, std::less<>> by_protocol;
  // Registration failures since the last LoadDriverPlugin started: a static
  // initialiser cannot return an error, so the loader collects them here.
  std::vector<Error> failures;
};

// Function-local static: safe to use from other translation units' static
// initialisers, whatever the initialisation order.
Registry& GetRegistry() {
  static Registry* r = new Registry;
  return *r;
}

const BlockDriver* Lookup(const std::map<std::string, const BlockDriver*, std::less<>>& m,
                          std::string_view name) {
  auto it = m.find(name);
  return it == m.end() ? nullptr : it->second;
}

}  // namespace

const std::vector<CreateOption>& BlockDriver::create_options() const {
  static const std::vector<CreateOption> kNone;
  return kNone;
}

Task<Status> BlockDriver::co_create(const std::string& filename, Options& opts,
                                    EventLoop& loop) const {
  (void)filename;
  (void)opts;
  (void)loop;
  co_return MakeError(ENOTSUP, "Driver '" + std::string(format_name()) +
                                   "' does not support image creation");
}

Status RegisterBlockDriver(std::unique_ptr<BlockDriver> driver) {
  if (!driver) return MakeError(EINVAL, "Cannot register a null block driver");
  Registry& r = GetRegistry();
  std::lock_guard lock(r.mu);
  std::string format(driver->format_name());
  std::string protocol(driver->protocol_name());
  if (format.empty()) return MakeError(EINVAL, "Block driver has no format name");
  if (r.by_format.contains(format)) {
    return MakeError(EEXIST, "Block driver '" + format + "' is already registered");
  }
  if (!protocol.empty() && r.by_protocol.contains(protocol)) {
    return MakeError(EEXIST, "Block protocol '" + protocol + "' is already registered");
  }
  const BlockDriver* d = driver.get();
  r.drivers.push_back(std::move(driver));
  r.by_format.emplace(format, d);
  if (!protocol.empty()) r.by_protocol.emplace(protocol, d);
  return OkStatus();
}

const BlockDriver* FindFormatDriver(std::string_view name) {
  Registry& r = GetRegistry();
  std::lock_guard lock(r.mu);
  return Lookup(r.by_format, name);
}

const BlockDriver* FindProtocolDriver(std::string_view name) {
  Registry& r = GetRegistry();
  std::lock_guard lock(r.mu);
  return Lookup(r.by_protocol, name);
}

std::vector<const BlockDriver*> AllBlockDrivers() {
  Registry& r = GetRegistry();
  std::lock_guard lock(r.mu);
  std::vector<const BlockDriver*> out;
  for (const auto& d : r.drivers) out.push_back(d.get());
  return out;
}

const BlockDriver* ProbeFormat(std::span<const uint8_t> first_bytes, std::string_view filename) {
  const BlockDriver* best = nullptr;
  int best_score = 0;
  for (const BlockDriver* d : AllBlockDrivers()) {
    if (!d->protocol_name().empty()) continue;
    int score = d->probe(first_bytes, filename);
    if (score > best_score) {
      best = d;
      best_score = score;
    }
  }
  return best ? best : FindFormatDriver("raw");
}

Status LoadDriverPlugin(const std::string& path) {
  Registry& r = GetRegistry();
  {
    std::lock_guard lock(r.mu);
    r.failures.clear();
  }
  dlerror();
  // The handle is never closed: registered drivers live in the plugin's code.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!handle) {
    const char* err = dlerror();
    return MakeError(ENOENT, "Could not load driver plugin '" + path +
                                 "': " + (err ? err : "unknown error"));
  }
  std::lock_guard lock(r.mu);
  if (!r.failures.empty()) {
    Error e = r.failures.front().WithContext("Driver plugin '" + path + "'");
    r.failures.clear();
    return std::unexpected(e);
  }
  return OkStatus();
}

namespace detail {

DriverRegistrar::DriverRegistrar(std::unique_ptr<BlockDriver> d) {
  Status s = RegisterBlockDriver(std::move(d));
  if (s) return;
  Registry& r = GetRegistry();
  std::lock_guard lock(r.mu);
  r.failures.push_back(s.error());
  std::fprintf(stderr, "coblk: %s\n", s.error().message().c_str());
}

}  // namespace detail

Status LoadDriverPluginsFromEnvironment() {
  const char* list = std::getenv("COBLK_PLUGINS");
  if (!list) return OkStatus();
  std::string_view rest(list);
  while (!rest.empty()) {
    const size_t colon = rest.find(':');
    const std::string path(rest.substr(0, colon));
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
    if (path.empty()) continue;
    COBLK_RETURN_IF_ERROR(LoadDriverPlugin(path));
  }
  return OkStatus();
}

}  // namespace coblk
