// libpg_query's scanner reads standard_conforming_strings from a thread-local variable, as the
// server's scanner reads the GUC: pgrail sets it to the session's value around each analysis.
#pragma once

extern "C" {
// Defined (thread-local) in libpg_query's copy of PostgreSQL's scan.l: default true, and
// BACKSLASH_QUOTE_SAFE_ENCODING (2; 0 is off: \' in a string is an error).
extern __thread bool standard_conforming_strings;
extern __thread int backslash_quote;
}

namespace pgrail::sql::detail {

// The scanner's settings on one thread.
struct ScannerSettings {
    bool standard_conforming_strings = true;
    int backslash_quote = 2;
};

[[nodiscard]] inline ScannerSettings current_scanner_settings() {
    return {standard_conforming_strings, backslash_quote};
}

// These settings for the current thread while this object lives.
class ScopedScannerSettings {
public:
    explicit ScopedScannerSettings(ScannerSettings settings) : saved_(current_scanner_settings()) { apply(settings); }
    ~ScopedScannerSettings() { apply(saved_); }
    ScopedScannerSettings(const ScopedScannerSettings&) = delete;
    ScopedScannerSettings& operator=(const ScopedScannerSettings&) = delete;

private:
    static void apply(ScannerSettings settings) {
        standard_conforming_strings = settings.standard_conforming_strings;
        backslash_quote = settings.backslash_quote;
    }
    ScannerSettings saved_;
};

}  // namespace pgrail::sql::detail
