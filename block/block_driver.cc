#include "block/block_driver.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>

#include "block/plugin.h"

namespace coblk {

namespace {

// Drivers are registered once and never removed, so the raw pointers handed
// out stay valid for the life of the process.
struct Registry {
  std::mutex mu;
  std::vector<std::unique_ptr<BlockDriver>> drivers;  // registration order
  std::map<std::string, const BlockDriver*, std::less<>> by_format;
  std::map<std::string, const BlockDriver*, std::less<>> by_protocol;
  std::map<const BlockDriver*, std::string> origin;
  std::set<std::string, std::less<>> loaded_plugins;  // real paths
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

namespace {

void AddLocked(Registry& r, std::unique_ptr<BlockDriver> driver, std::string origin) {
  const BlockDriver* d = driver.get();
  r.by_format.emplace(std::string(d->format_name()), d);
  if (!d->protocol_name().empty()) r.by_protocol.emplace(std::string(d->protocol_name()), d);
  r.origin.emplace(d, std::move(origin));
  r.drivers.push_back(std::move(driver));
}

}  // namespace

std::string DriverOrigin(const BlockDriver* driver) {
  Registry& r = GetRegistry();
  std::lock_guard lock(r.mu);
  auto it = r.origin.find(driver);
  return it == r.origin.end() ? std::string() : it->second;
}

Status RegisterBlockDriver(std::unique_ptr<BlockDriver> driver, std::string origin) {
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
  AddLocked(r, std::move(driver), std::move(origin));
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

namespace {

// Reads exactly n bytes at off; false on a short read or error.
bool ReadAt(int fd, uint64_t off, void* buf, size_t n) {
  auto* p = static_cast<uint8_t*>(buf);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, static_cast<off_t>(off));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    off += static_cast<uint64_t>(r);
    n -= static_cast<size_t>(r);
  }
  return true;
}

std::string AbiMismatchHint() {
  return "this coblk has plugin ABI " + std::to_string(kPluginAbiVersion);
}

}  // namespace

// The file is untrusted: every offset and size from its headers is checked
// against the file's size before it is used, and nothing large is allocated.
Result<uint32_t> ReadPluginAbiVersion(const std::string& path) {
  const std::string what = "Driver plugin '" + path + "'";
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    return MakeError(e, "Could not load driver plugin '" + path + "': " + std::strerror(e));
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return MakeError(EINVAL, what + " is not a regular file");
  }
  const uint64_t file_size = static_cast<uint64_t>(st.st_size);
  auto fits = [&](uint64_t off, uint64_t len) { return off <= file_size && len <= file_size - off; };
  Elf64_Ehdr eh{};
  if (!ReadAt(fd, 0, &eh, sizeof eh) || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) {
    return MakeError(EINVAL, what + " is not an ELF shared object");
  }
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_ident[EI_DATA] != (std::endian::native == std::endian::little ? ELFDATA2LSB : ELFDATA2MSB)) {
    return MakeError(EINVAL, what + " is not built for this machine (ELF class or byte order)");
  }
  if (eh.e_shentsize != sizeof(Elf64_Shdr) || eh.e_shnum == 0 || eh.e_shstrndx >= eh.e_shnum ||
      !fits(eh.e_shoff, uint64_t{eh.e_shnum} * sizeof(Elf64_Shdr))) {
    return MakeError(EINVAL, what + " has a malformed ELF section table");
  }
  std::vector<Elf64_Shdr> sh(eh.e_shnum);  // at most 65535 entries
  if (!ReadAt(fd, eh.e_shoff, sh.data(), sh.size() * sizeof(Elf64_Shdr))) {
    return MakeError(EINVAL, what + " has a malformed ELF section table");
  }
  const Elf64_Shdr& strtab = sh[eh.e_shstrndx];
  constexpr uint64_t kMaxNames = 1 << 20;
  if (strtab.sh_type == SHT_NOBITS || strtab.sh_size > kMaxNames ||
      !fits(strtab.sh_offset, strtab.sh_size)) {
    return MakeError(EINVAL, what + " has a malformed ELF section name table");
  }
  std::string names(strtab.sh_size, '\0');
  if (!ReadAt(fd, strtab.sh_offset, names.data(), names.size())) {
    return MakeError(EINVAL, what + " has a malformed ELF section name table");
  }
  static constexpr std::string_view kSection = ".coblk_plugin_abi";
  for (const Elf64_Shdr& s : sh) {
    if (s.sh_name >= names.size()) continue;
    const size_t end = names.find('\0', s.sh_name);
    if (end == std::string::npos || std::string_view(names).substr(s.sh_name, end - s.sh_name) != kSection) {
      continue;
    }
    PluginAbiNote note{};
    if (s.sh_type == SHT_NOBITS || s.sh_size != sizeof note || !fits(s.sh_offset, sizeof note) ||
        !ReadAt(fd, s.sh_offset, &note, sizeof note) || note.magic != PluginAbiNote::kMagic) {
      return MakeError(EINVAL, what + " has a malformed coblk plugin ABI record");
    }
    return note.abi_version;
  }
  return MakeError(EINVAL, what + " declares no coblk plugin ABI version (it was built for a "
                                  "coblk before plugin ABI 1, or without COBLK_PLUGIN_DRIVERS); " +
                               AbiMismatchHint());
}

namespace {

// Collects a plugin's drivers; the loader registers them only if all pass.
class CollectingRegistrar final : public PluginRegistrar {
 public:
  void add(std::unique_ptr<BlockDriver> driver) override { drivers.push_back(std::move(driver)); }
  std::vector<std::unique_ptr<BlockDriver>> drivers;
};

}  // namespace

Status LoadDriverPlugin(const std::string& path) {
  Registry& r = GetRegistry();
  char resolved[PATH_MAX];
  const std::string key = ::realpath(path.c_str(), resolved) ? std::string(resolved) : path;
  {
    std::lock_guard lock(r.mu);
    if (r.loaded_plugins.contains(key)) return OkStatus();
  }
  // 1. The version, from the file: nothing of the plugin runs before this.
  auto version = ReadPluginAbiVersion(path);
  if (!version) return std::unexpected(version.error());
  if (*version != kPluginAbiVersion) {
    return MakeError(EINVAL, "Driver plugin '" + path + "' was built for coblk plugin ABI " +
                                 std::to_string(*version) + ", but " + AbiMismatchHint() +
                                 "; rebuild the plugin against this coblk");
  }
  // 2. Load it. RTLD_NOW: a missing symbol fails here, not in the middle of
  // a request. The handle is never closed: registered drivers live in it.
  // A name without '/' is a file here, as for ReadPluginAbiVersion, not a
  // library-path search.
  const std::string dl_path = path.find('/') == std::string::npos ? "./" + path : path;
  dlerror();
  void* handle = dlopen(dl_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* err = dlerror();
    return MakeError(ENOENT, "Could not load driver plugin '" + path +
                                 "': " + (err ? err : "unknown error"));
  }
  const auto* declared = static_cast<const uint32_t*>(dlsym(handle, "coblk_plugin_abi_version"));
  auto init = reinterpret_cast<coblk_plugin_init_fn>(dlsym(handle, "coblk_plugin_init"));
  if (!declared || *declared != kPluginAbiVersion || !init) {
    return MakeError(EINVAL, "Driver plugin '" + path +
                                 "' does not export coblk_plugin_abi_version and "
                                 "coblk_plugin_init (use COBLK_PLUGIN_DRIVERS)");
  }
  // 3. Collect its drivers, check them all, then register them all.
  CollectingRegistrar collected;
  init(collected);
  if (collected.drivers.empty()) {
    return MakeError(EINVAL, "Driver plugin '" + path + "' registers no drivers");
  }
  std::lock_guard lock(r.mu);
  std::set<std::string, std::less<>> formats, protocols;
  for (const auto& d : collected.drivers) {
    if (!d) return MakeError(EINVAL, "Driver plugin '" + path + "' registers a null driver");
    const std::string format(d->format_name());
    const std::string protocol(d->protocol_name());
    if (format.empty()) {
      return MakeError(EINVAL, "Driver plugin '" + path + "': block driver has no format name");
    }
    if (r.by_format.contains(format) || !formats.insert(format).second) {
      return MakeError(EEXIST, "Driver plugin '" + path + "': block driver '" + format +
                                   "' is already registered");
    }
    if (!protocol.empty() && (r.by_protocol.contains(protocol) || !protocols.insert(protocol).second)) {
      return MakeError(EEXIST, "Driver plugin '" + path + "': block protocol '" + protocol +
                                   "' is already registered");
    }
  }
  for (auto& d : collected.drivers) AddLocked(r, std::move(d), path);
  r.loaded_plugins.insert(key);
  return OkStatus();
}

Status LoadDriverPluginDirectory(const std::string& dir) {
  std::error_code ec;
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".so" && entry.is_regular_file(ec)) {
      files.push_back(entry.path().string());
    }
  }
  if (ec) {
    return MakeError(ec.value(), "Could not read plugin directory '" + dir + "': " + ec.message());
  }
  std::sort(files.begin(), files.end());
  for (const std::string& f : files) COBLK_RETURN_IF_ERROR(LoadDriverPlugin(f));
  return OkStatus();
}

namespace detail {

DriverRegistrar::DriverRegistrar(std::unique_ptr<BlockDriver> d) {
  Status s = RegisterBlockDriver(std::move(d), "built-in");
  if (s) return;
  std::fprintf(stderr, "coblk: %s\n", s.error().message().c_str());
}

}  // namespace detail

namespace {

std::vector<std::string> SplitColons(const char* list) {
  std::vector<std::string> out;
  if (!list) return out;
  std::string_view rest(list);
  while (!rest.empty()) {
    const size_t colon = rest.find(':');
    std::string item(rest.substr(0, colon));
    rest = colon == std::string_view::npos ? std::string_view() : rest.substr(colon + 1);
    if (!item.empty()) out.push_back(std::move(item));
  }
  return out;
}

}  // namespace

Status LoadDriverPluginsFromEnvironment() {
  for (const std::string& dir : SplitColons(std::getenv("COBLK_PLUGIN_PATH"))) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir, ec)) continue;
    COBLK_RETURN_IF_ERROR(LoadDriverPluginDirectory(dir));
  }
  for (const std::string& path : SplitColons(std::getenv("COBLK_PLUGINS"))) {
    COBLK_RETURN_IF_ERROR(LoadDriverPlugin(path));
  }
  return OkStatus();
}

}  // namespace coblk
