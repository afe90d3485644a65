// Argument checks for kernels. A failed check throws std::invalid_argument, which the
// bindings translate to Python's ValueError; kernels never abort the interpreter.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace pydetect {

template <class... Parts>
[[noreturn]] void fail(const Parts&... parts) {
  std::ostringstream message;
  (message << ... << parts);
  throw std::invalid_argument(message.str());
}

}  // namespace pydetect

// PD_CHECK(cond, "what was expected, got ", value, ...): message parts are streamed.
#define PD_CHECK(cond, ...)              \
  do {                                   \
    if (!(cond)) ::pydetect::fail(__VA_ARGS__); \
  } while (0)
