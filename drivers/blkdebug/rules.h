// blkdebug rules: what to inject, when, and for which requests.
//
// Two actions, as in QEMU's blkdebug:
//  * inject-error: fail matching requests with an errno;
//  * set-state: on an event, move the node to another state (rules may be
//    restricted to one state, so event sequences can be scripted).
//
// QEMU semantics: an inject-error rule with an `event` is armed when that
// event fires (BlockNode::debug_event); each firing event replaces the set
// of armed rules with its own rules. Armed rules then fail the next matching
// request. `immediately=off` (default) completes the failed request from a
// later loop iteration, `immediately=on` fails it synchronously; `once=on`
// deletes the rule after it fired once.
//
// coblk extensions: a rule without `event` is armed from the start; `offset`
// and `length` (bytes) give a range instead of QEMU's single `sector`;
// `after=N` lets the first N matching requests pass; `iotype` takes several
// types separated by '|'.
#pragma once

#include <cstdint>
#include <list>
#include <string>

#include "block/options.h"
#include "util/status.h"

namespace coblk::blkdebug {

enum IoType : uint32_t {
  kIoRead = 1u << 0,
  kIoWrite = 1u << 1,
  kIoWriteZeroes = 1u << 2,
  kIoDiscard = 1u << 3,
  kIoFlush = 1u << 4,
  kIoBlockStatus = 1u << 5,
  // QEMU's default: everything but block-status.
  kIoDefault = kIoRead | kIoWrite | kIoWriteZeroes | kIoDiscard | kIoFlush,
};

struct Rule {
  enum class Action { kInjectError, kSetState };
  Action action = Action::kInjectError;
  std::string event;    // empty: armed from the start (inject-error only)
  int64_t state = 0;    // 0: any state
  // inject-error
  int error = 5;        // EIO
  bool once = false;
  bool immediately = false;
  int64_t offset = -1;  // -1: any offset
  int64_t length = 1;
  uint32_t iotypes = kIoDefault;
  uint64_t after = 0;   // matching requests to let through first
  uint64_t seen = 0;
  bool deleted = false;  // once=on rules after firing
  // set-state
  int64_t new_state = 0;

  // Whether [offset, offset+bytes) of iotype is a target (ignores `after`).
  bool Matches(uint32_t iotype, int64_t req_offset, int64_t req_bytes) const;
};

// Parses one rule's options ("event", "errno", ...). Unknown keys are errors.
Result<Rule> ParseRule(Rule::Action action, Options& opts);

// Rules from "inject-error.N.*" and "set-state.N.*" keys, in index order.
Status ParseInlineRules(Options& opts, std::list<Rule>& out);

// Rules from a QEMU blkdebug config file:
//   [inject-error]
//   event = "write_aio"
//   errno = "28"
Status ReadConfigFile(const std::string& path, std::list<Rule>& out);

}  // namespace coblk::blkdebug
