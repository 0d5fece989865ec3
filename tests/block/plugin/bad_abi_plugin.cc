// Plugins LoadDriverPlugin must refuse without running any of their code.
// Built twice (tests/CMakeLists.txt):
//  * COBLK_TEST_ABI_VERSION set: declares that plugin ABI (a future or past
//    coblk) in the same record COBLK_PLUGIN_DRIVERS writes;
//  * unset: a plugin from before plugin ABI versioning, with no record and a
//    static-initialiser registration.
// Either way its static initialiser aborts, so loading it at all would kill
// the test: the refusal must come from reading the file.
#include <cstdlib>

#include "block/plugin.h"

namespace {
struct AbortOnLoad {
  AbortOnLoad() { std::abort(); }
};
const AbortOnLoad abort_on_load;
}  // namespace

#ifdef COBLK_TEST_ABI_VERSION
extern "C" __attribute__((visibility("default"), used, section(".coblk_plugin_abi")))
const coblk::PluginAbiNote coblk_plugin_abi_note = {coblk::PluginAbiNote::kMagic,
                                                    COBLK_TEST_ABI_VERSION, 0};
extern "C" __attribute__((visibility("default"))) const uint32_t coblk_plugin_abi_version =
    COBLK_TEST_ABI_VERSION;
#endif
