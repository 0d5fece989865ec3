// ReportError: a message a driver prints as it detects a problem during
// I/O, beside the errno its request fails with (QEMU's error_report from a
// driver, e.g. vmdk's "Could not write to allocated cluster for
// streamOptimized" before qemu-io's "write failed: Input/output error").
//
// By default the message goes to stderr as "<program>: <message>", like
// QEMU's. An embedding program may route it elsewhere with
// SetErrorReporter. Threading: set the reporter once, before any I/O; it
// is called on whichever loop thread detects the problem, so it must be
// thread-safe if several loops run.
#pragma once

#include <string>

namespace coblk {

using ErrorReporter = void (*)(const std::string& message);

void ReportError(const std::string& message);
// nullptr restores the default (stderr).
void SetErrorReporter(ErrorReporter reporter);

}  // namespace coblk
