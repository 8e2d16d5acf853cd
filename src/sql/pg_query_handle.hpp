// RAII owners for libpg_query results: every result is freed on every path.
#pragma once

#include <pg_query.h>

namespace pgrail::sql::detail {

template <class Result, void (*Free)(Result)>
class PgQueryHandle {
public:
    explicit PgQueryHandle(Result result) noexcept : result_(result) {}
    ~PgQueryHandle() { Free(result_); }
    PgQueryHandle(const PgQueryHandle&) = delete;
    PgQueryHandle& operator=(const PgQueryHandle&) = delete;

    const Result* operator->() const noexcept { return &result_; }
    const Result& get() const noexcept { return result_; }

private:
    Result result_;
};

using ParseHandle = PgQueryHandle<PgQueryParseResult, pg_query_free_parse_result>;
using PlpgsqlHandle = PgQueryHandle<PgQueryPlpgsqlParseResult, pg_query_free_plpgsql_parse_result>;

}  // namespace pgrail::sql::detail
