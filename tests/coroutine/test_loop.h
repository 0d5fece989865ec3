// Shared fixture: a fresh EventLoop per test.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "io/event_loop.h"

namespace coblk {

class LoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto l = EventLoop::Create();
    ASSERT_TRUE(l.has_value()) << l.error().ToString();
    loop_ = std::move(*l);
    loop_->make_current();
  }
  EventLoop& loop() { return *loop_; }
  std::unique_ptr<EventLoop> loop_;
};

}  // namespace coblk
