// The "blkdebug" filter (QEMU's blkdebug): passes requests to its "file"
// child, failing the ones its rules select, and can simulate power loss.
//
// Options:
//   config                 QEMU blkdebug config file ([inject-error], [set-state])
//   inject-error.N.KEY     inline rule N; KEY: event, errno, sector, offset,
//                          length, once, immediately, iotype, after, state
//   set-state.N.KEY        inline rule N; KEY: event, state, new_state
//   align                  request alignment the generic layer must honour
//   max-transfer           largest request (multiple of align)
//   opt-write-zero, max-write-zero, opt-discard   limits for the generic layer
//   drop-writes-after=N    power loss: after N writes (write, write zeroes,
//                          discard) reached the file, later ones, truncates
//                          and flushes are dropped while reporting success
//   drop-writes-event=E    power loss from the moment event E fires
// See rules.h for the rule semantics. get_specific_info() reports counters.
#include <coroutine>
#include <cstring>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "block/block_driver.h"
#include "block/block_node.h"
#include "coroutine/executor.h"
#include "drivers/blkdebug/rules.h"

namespace coblk::blkdebug {

namespace {

// Resumes the coroutine from the next loop iteration (QEMU's aio_co_schedule
// + yield), so a non-immediate error completes asynchronously.
struct Reschedule {
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) { Executor::current()->schedule(h); }
  void await_resume() const noexcept {}
};

bool IsPowerOfTwo(uint64_t n) { return n && !(n & (n - 1)); }

}  // namespace

struct Config {
  std::list<Rule> rules;
  uint64_t align = 0;  // 0: inherit from the file
  uint64_t max_transfer = 0;
  uint64_t opt_write_zero = 0;
  uint64_t max_write_zero = 0;
  uint64_t opt_discard = 0;
  int64_t drop_writes_after = -1;  // -1: never
  std::string drop_writes_event;
};

class BlkdebugNode final : public BlockNode {
 public:
  BlkdebugNode(const BlockDriver* driver, EventLoop& loop, Config config)
      : BlockNode(driver, loop), config_(std::move(config)) {
    // Armed from the start: rules without an event.
    for (Rule& r : config_.rules)
      if (r.action == Rule::Action::kInjectError && r.event.empty()) always_.push_back(&r);
  }

  void debug_event(const std::string& event) override;
  InfoTree get_specific_info() override;
  bool has_zero_init() override { return file()->has_zero_init(); }

 protected:
  Task<Status> co_preadv(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) override {
    COBLK_CO_RETURN_IF_ERROR(CheckGuarantees(offset, bytes));
    COBLK_CO_RETURN_IF_ERROR(co_await RuleCheck(kIoRead, offset, bytes));
    co_return co_await file()->preadv(offset, bytes, qiov, flags);
  }

  Task<Status> co_pwritev(int64_t offset, int64_t bytes, IoVector& qiov, uint32_t flags) override {
    COBLK_CO_RETURN_IF_ERROR(CheckGuarantees(offset, bytes));
    COBLK_CO_RETURN_IF_ERROR(co_await RuleCheck(kIoWrite, offset, bytes));
    if (DropWrite()) co_return OkStatus();
    co_return co_await file()->pwritev(offset, bytes, qiov, flags);
  }

  Task<Status> co_pwrite_zeroes(int64_t offset, int64_t bytes, uint32_t flags) override {
    COBLK_CO_RETURN_IF_ERROR(CheckGuarantees(offset, bytes));
    COBLK_CO_RETURN_IF_ERROR(co_await RuleCheck(kIoWriteZeroes, offset, bytes));
    if (DropWrite()) co_return OkStatus();
    co_return co_await file()->pwrite_zeroes(offset, bytes, flags);
  }

  Task<Status> co_pdiscard(int64_t offset, int64_t bytes) override {
    COBLK_CO_RETURN_IF_ERROR(co_await RuleCheck(kIoDiscard, offset, bytes));
    if (DropWrite()) co_return OkStatus();
    co_return co_await file()->pdiscard(offset, bytes);
  }

  Task<Status> co_flush() override {
    COBLK_CO_RETURN_IF_ERROR(co_await RuleCheck(kIoFlush, 0, 0));
    if (dropping_) {
      ++dropped_;
      co_return OkStatus();
    }
    co_return co_await file()->flush();
  }

  Task<Status> co_truncate(int64_t size, bool exact, PreallocMode prealloc) override {
    if (dropping_) {
      // Power is lost: the file keeps its size, as it keeps its bytes.
      // The node pretends, so the writer carries on as before the loss.
      ++dropped_;
      set_size(size);
      co_return OkStatus();
    }
    COBLK_CO_RETURN_IF_ERROR(co_await file()->truncate(size, exact, prealloc));
    set_size(file()->size());
    co_return OkStatus();
  }

  Task<Result<BlockStatus>> co_block_status(bool, int64_t offset, int64_t bytes) override {
    COBLK_CO_RETURN_IF_ERROR(co_await RuleCheck(kIoBlockStatus, offset, bytes));
    co_return BlockStatus{kStatusRaw | kStatusOffsetValid, bytes, offset, file()};
  }

  BlockLimits driver_limits() override {
    BlockLimits l;
    if (config_.align) l.request_alignment = static_cast<uint32_t>(config_.align);
    l.max_transfer = config_.max_transfer;
    l.pwrite_zeroes_alignment = static_cast<uint32_t>(config_.opt_write_zero);
    l.max_pwrite_zeroes = config_.max_write_zero;
    l.pdiscard_alignment = config_.opt_discard;
    return l;
  }

 private:
  Task<Status> RuleCheck(uint32_t iotype, int64_t offset, int64_t bytes);
  Rule* FindRule(uint32_t iotype, int64_t offset, int64_t bytes);
  Status CheckGuarantees(int64_t offset, int64_t bytes) const;
  bool DropWrite();

  Config config_;
  std::vector<Rule*> always_;
  std::vector<Rule*> armed_;  // armed by the last event that had inject rules
  int64_t state_ = 1;         // QEMU's initial state
  bool dropping_ = false;
  uint64_t writes_passed_ = 0;
  uint64_t dropped_ = 0;
  uint64_t injected_ = 0;
  uint64_t events_ = 0;
};

// Like QEMU's blkdebug_debug_event/process_rule.
void BlkdebugNode::debug_event(const std::string& event) {
  ++events_;
  if (!config_.drop_writes_event.empty() && event == config_.drop_writes_event) dropping_ = true;
  int64_t new_state = state_;
  bool armed_any = false;
  for (Rule& r : config_.rules) {
    if (r.deleted || r.event != event) continue;
    if (r.state != 0 && r.state != state_) continue;
    if (r.action == Rule::Action::kSetState) {
      new_state = r.new_state;
      continue;
    }
    if (!armed_any) armed_.clear();  // an event replaces the armed set
    armed_any = true;
    armed_.push_back(&r);
  }
  state_ = new_state;
}

Rule* BlkdebugNode::FindRule(uint32_t iotype, int64_t offset, int64_t bytes) {
  for (auto* list : {&armed_, &always_}) {
    for (Rule* r : *list) {
      if (!r->Matches(iotype, offset, bytes)) continue;
      // Event-less rules honour `state` at request time.
      if (list == &always_ && r->state != 0 && r->state != state_) continue;
      if (r->seen < r->after) {
        ++r->seen;
        continue;
      }
      return r;
    }
  }
  return nullptr;
}

Task<Status> BlkdebugNode::RuleCheck(uint32_t iotype, int64_t offset, int64_t bytes) {
  Rule* rule = FindRule(iotype, offset, bytes);
  if (!rule || rule->error == 0) co_return OkStatus();
  const int error = rule->error;
  const bool immediately = rule->immediately;
  if (rule->once) {
    rule->deleted = true;
    std::erase(armed_, rule);
    std::erase(always_, rule);
  }
  ++injected_;
  if (!immediately) co_await Reschedule{};
  co_return MakeError(error, "blkdebug: injected error: " + std::string(std::strerror(error)));
}

// The generic layer promises aligned, bounded requests; blkdebug verifies it.
Status BlkdebugNode::CheckGuarantees(int64_t offset, int64_t bytes) const {
  const int64_t align = limits().request_alignment;
  if (align > 1 && (offset % align != 0 || bytes % align != 0))
    return MakeError(EINVAL, "blkdebug: request [" + std::to_string(offset) + ", +" +
                                 std::to_string(bytes) + ") not aligned to " +
                                 std::to_string(align));
  if (config_.max_transfer && static_cast<uint64_t>(bytes) > config_.max_transfer)
    return MakeError(EINVAL, "blkdebug: request of " + std::to_string(bytes) +
                                 " bytes exceeds max-transfer");
  return OkStatus();
}

bool BlkdebugNode::DropWrite() {
  if (!dropping_ && config_.drop_writes_after >= 0 &&
      writes_passed_ >= static_cast<uint64_t>(config_.drop_writes_after))
    dropping_ = true;
  if (dropping_) {
    ++dropped_;
    return true;
  }
  ++writes_passed_;
  return false;
}

InfoTree BlkdebugNode::get_specific_info() {
  InfoTree t;
  t.values = {{"state", std::to_string(state_)},
              {"events", std::to_string(events_)},
              {"errors injected", std::to_string(injected_)},
              {"writes passed", std::to_string(writes_passed_)},
              {"requests dropped", std::to_string(dropped_)},
              {"dropping writes", dropping_ ? "true" : "false"}};
  return t;
}

namespace {

Status ParseLimits(Options& o, Config& c) {
  struct Field {
    const char* key;
    uint64_t* out;
  };
  const Field fields[] = {{"align", &c.align},
                          {"max-transfer", &c.max_transfer},
                          {"opt-write-zero", &c.opt_write_zero},
                          {"max-write-zero", &c.max_write_zero},
                          {"opt-discard", &c.opt_discard}};
  for (const Field& f : fields) {
    auto v = o.get_size(f.key, 0);
    if (!v) return std::unexpected(v.error());
    *f.out = *v;
  }
  // QEMU's blkdebug_apply_limits checks.
  if (o.has("align") || c.align) {
    if (!IsPowerOfTwo(c.align) || c.align >= INT32_MAX)
      return MakeError(EINVAL, "Cannot meet constraints with align " + std::to_string(c.align));
  }
  const uint64_t align = c.align ? c.align : 1;
  if (c.max_transfer && (c.max_transfer % align || c.max_transfer >= INT32_MAX))
    return MakeError(EINVAL, "Cannot meet constraints with max-transfer " +
                                 std::to_string(c.max_transfer));
  if (c.opt_write_zero && (c.opt_write_zero % align || c.opt_write_zero >= INT32_MAX))
    return MakeError(EINVAL, "Cannot meet constraints with opt-write-zero " +
                                 std::to_string(c.opt_write_zero));
  if (c.opt_discard && c.opt_discard % align)
    return MakeError(EINVAL, "Cannot meet constraints with opt-discard " +
                                 std::to_string(c.opt_discard));
  return OkStatus();
}

Result<Config> ParseConfig(Options& o) {
  Config c;
  const std::string config_file = o.take_string("config").value_or("");
  if (!config_file.empty()) COBLK_RETURN_IF_ERROR(ReadConfigFile(config_file, c.rules));
  COBLK_RETURN_IF_ERROR(ParseInlineRules(o, c.rules));
  COBLK_RETURN_IF_ERROR(ParseLimits(o, c));
  auto after = o.get_int("drop-writes-after", -1);
  if (!after) return std::unexpected(after.error());
  if (*after < -1) return MakeError(EINVAL, "drop-writes-after must be -1 or more");
  c.drop_writes_after = *after;
  c.drop_writes_event = o.take_string("drop-writes-event").value_or("");
  return c;
}

}  // namespace

class BlkdebugDriver final : public BlockDriver {
 public:
  std::string_view format_name() const override { return "blkdebug"; }
  bool is_filter() const override { return true; }
  bool has_file_child() const override { return true; }
  std::string_view file_child_alias() const override { return "image"; }

  Task<Result<std::shared_ptr<BlockNode>>> open(OpenContext& ctx) const override {
    std::string filename = ctx.filename;
    if (auto f = ctx.options.take_string("filename"); f && filename.empty()) filename = *f;
    auto config = ParseConfig(ctx.options);
    if (!config) co_return std::unexpected(config.error());
    auto child = co_await ctx.open_child("file", ChildRole::kFile, filename);
    if (!child) co_return std::unexpected(child.error());
    auto node = std::make_shared<BlkdebugNode>(this, ctx.loop, std::move(*config));
    node->attach_file(*child, ctx.read_only);
    // Flags pass through to the file, whose generic layer honours them.
    node->set_supported_flags(kReqFua, kReqFua | kReqMayUnmap | kReqNoFallback);
    node->refresh_limits();
    co_return std::shared_ptr<BlockNode>(std::move(node));
  }
};

COBLK_REGISTER_BLOCK_DRIVER(BlkdebugDriver)

}  // namespace coblk::blkdebug
