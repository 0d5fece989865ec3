// Printing an InfoTree (format-specific image information) like QEMU's
// bdrv_image_info_specific_dump (human) and its QAPI JSON form.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "block/block_types.h"

namespace coblk::tools {

// "    key: value" lines, dashes in keys printed as spaces, lists as "[i]:".
void DumpInfoTree(const InfoTree& tree, int indentation);

// Values are strings in InfoTree; JSON gets integers and booleans back where
// the text is one, as QAPI would have typed them.
nlohmann::ordered_json InfoTreeToJson(const InfoTree& tree);

// The key order QEMU's JSON output has for an object whose members were
// added in j's order (the QAPI schema's): QDict's hash-bucket order,
// recursively.
nlohmann::ordered_json QemuKeyOrder(const nlohmann::ordered_json& j);

// Pretty JSON the way QEMU prints it (4-space indent, QDict key order).
std::string JsonPretty(const nlohmann::ordered_json& j);

}  // namespace coblk::tools
