// Changing a VMDK's backing file (rebase): the descriptor's
// parentFileNameHint line and parentCID are rewritten in place, the way the
// CID update on first write rewrites it (vmdk_write.cc). QEMU 7.2's vmdk has
// no bdrv_change_backing_file; the lines written are the ones its create
// writes for a backing file.
#include <cstring>
#include <string>

#include "block/block_driver.h"
#include "drivers/vmdk/descriptor.h"
#include "drivers/vmdk/vmdk_node.h"

namespace coblk::vmdk {

namespace {

// Replaces (or, with an empty hint, removes) the parentFileNameHint line;
// a missing line goes after createType, where QEMU's create puts it.
Result<std::string> SetParentHint(const std::string& text, const std::string& hint) {
  const std::string line = hint.empty() ? "" : "parentFileNameHint=\"" + hint + "\"\n";
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    end = end == std::string::npos ? text.size() : end + 1;
    std::string_view l(text.data() + pos, end - pos);
    const size_t first = l.find_first_not_of(" \t");
    if (first != std::string_view::npos && l.substr(first).starts_with("parentFileNameHint")) {
      return text.substr(0, pos) + line + text.substr(end);
    }
    pos = end;
  }
  if (hint.empty()) return text;
  const size_t ct = text.find("createType");
  if (ct == std::string::npos) return MakeError(EINVAL, "invalid VMDK image descriptor");
  size_t after = text.find('\n', ct);
  after = after == std::string::npos ? text.size() : after + 1;
  std::string out = text.substr(0, after);
  if (!out.empty() && out.back() != '\n') out += '\n';
  return out + line + text.substr(after);
}

}  // namespace

Task<Status> VmdkNode::co_change_backing_file(const std::string& name, const std::string& format,
                                              BlockNode* new_backing) {
  if (!descriptor_file) co_return MakeError(ENOTSUP, "Operation not supported");
  if (name.size() > kMaxExtentFileName) co_return MakeError(EINVAL, "parentFileNameHint too long");
  if (name.find_first_of("\"\n") != std::string::npos)
    co_return MakeError(EINVAL, "Invalid backing file name: " + name);
  uint32_t new_parent_cid = kNoParentCid;
  if (!name.empty()) {
    auto* parent = dynamic_cast<VmdkNode*>(new_backing);
    if (!parent || (!format.empty() && format != "vmdk")) {
      const std::string fmt = !format.empty() ? format
                              : new_backing   ? std::string(new_backing->driver()->format_name())
                                              : "unknown";
      co_return MakeError(EINVAL, "Invalid backing file format: " + fmt + ". Must be vmdk.");
    }
    new_parent_cid = parent->cid;
  }
  auto guard = co_await cid_lock_.scoped_lock();
  auto text = co_await read_descriptor_text();
  if (!text) co_return std::unexpected(text.error());
  auto with_cid = SetCid(*text, CidField::kParentCid, new_parent_cid);
  if (!with_cid) co_return std::unexpected(with_cid.error());
  auto updated = SetParentHint(*with_cid, name);
  if (!updated) co_return std::unexpected(updated.error());
  COBLK_CO_RETURN_IF_ERROR(co_await write_descriptor_text(*updated, "with the new backing file",
                                                         /*keep_tail=*/false));
  COBLK_CO_RETURN_IF_ERROR(co_await descriptor_file->flush());
  parent_cid = new_parent_cid;
  parent_file_name_hint = name;
  cid_checked_ = false;
  co_return OkStatus();
}

}  // namespace coblk::vmdk
