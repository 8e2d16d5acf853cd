// fmt for this module. The root CMakeLists.txt does not link pgrail_migrations with fmt::fmt,
// so fmt is used header-only here until it does (then drop the define).
#pragma once

#ifndef FMT_HEADER_ONLY
#define FMT_HEADER_ONLY
#endif
#include <fmt/format.h>
