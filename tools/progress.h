// qemu-img's progress line (util/qemu-progress.c, simple mode):
// "    (12.34/100%)\r" on stdout, printed when the figure moved by more than
// min_skip, or is exactly 0 or 100; end() ends the line.
#pragma once

#include <cstdio>

namespace coblk::tools {

class Progress {
 public:
  Progress(bool enabled, float min_skip) : enabled_(enabled), min_skip_(min_skip) {}
  // delta percent of max (qemu_progress_print); max == 0 sets delta as is.
  void print(float delta, int max) {
    float current = max == 0 ? delta : current_ + delta / 100 * static_cast<float>(max);
    if (current > 100) current = 100;
    current_ = current;
    if (current > last_print_ + min_skip_ || current < last_print_ - min_skip_ || current == 0 ||
        current == 100) {
      last_print_ = current_;
      if (enabled_) {
        std::printf("    (%3.2f/100%%)\r", static_cast<double>(current_));
        std::fflush(stdout);
      }
    }
  }
  void end() {
    if (enabled_) {
      std::printf("\n");
      std::fflush(stdout);
    }
  }

 private:
  bool enabled_;
  float min_skip_;
  float current_ = 0;
  float last_print_ = 0;
};

}  // namespace coblk::tools
