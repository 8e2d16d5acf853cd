/* PostgreSQL's scanner called directly: see raw_scanner.h. */
#include "raw_scanner.h"

/* libpg_query makes PostgreSQL's error and memory-context globals thread-local; the server's
 * headers declare them as plain globals. Their declarations are renamed away while the headers
 * are read, and declared again below as libpg_query defines them (PG_TRY's expansion uses the
 * names, so it reaches the thread-local ones). */
#define PG_exception_stack pgrail_headers_PG_exception_stack
#define error_context_stack pgrail_headers_error_context_stack
#define CurrentMemoryContext pgrail_headers_CurrentMemoryContext
#include "postgres.h"
#include "parser/scanner.h"
#undef PG_exception_stack
#undef error_context_stack
#undef CurrentMemoryContext

#include <limits.h>
#include <stdlib.h>
#include <string.h>

extern __thread sigjmp_buf* PG_exception_stack;
extern __thread ErrorContextCallback* error_context_stack;
extern __thread MemoryContext CurrentMemoryContext;

/* pg_query_internal.h's, declared here: that header includes postgres.h as it stands. */
MemoryContext pg_query_enter_memory_context(void);
void pg_query_exit_memory_context(MemoryContext ctx);

/* libpg_query's scan.l keeps one field more than PostgreSQL's core_yy_extra_type (yyllocend, at
 * the end): room for it, and more. */
typedef struct {
    core_yy_extra_type core;
    char libpg_query_fields[64];
} ScannerExtra;

static char* copy_of(const char* text) {
    char* copy = malloc(strlen(text) + 1);
    if (copy != NULL) strcpy(copy, text);
    return copy;
}

/* Appends a token; 0 when memory ran out. */
static int add_token(PgrailRawScan* out, int* capacity, int start, int kind) {
    if (out->count == *capacity) {
        if (*capacity > INT_MAX / 2) return 0;
        const int grown = *capacity == 0 ? 256 : *capacity * 2;
        PgrailRawToken* tokens = realloc(out->tokens, (size_t)grown * sizeof(PgrailRawToken));
        if (tokens == NULL) return 0;
        out->tokens = tokens;
        *capacity = grown;
    }
    out->tokens[out->count].start = start;
    out->tokens[out->count].kind = kind;
    ++out->count;
    return 1;
}

void pgrail_raw_scan(const char* text, PgrailRawScan* out) {
    MemoryContext context = pg_query_enter_memory_context();
    out->tokens = NULL;
    out->count = 0;
    out->failed = 0;
    out->error = NULL;
    out->cursor = 0;
    /* (What the block changes and the handler reads lives in *out, not in this frame's locals.) */
    PG_TRY();
    {
        ScannerExtra extra;
        core_YYSTYPE value;
        YYLTYPE location = 0;
        int capacity = 0;
        core_yyscan_t scanner = scanner_init(text, &extra.core, &ScanKeywords, ScanKeywordTokens);
        for (;;) {
            const int kind = core_yylex(&value, &location, scanner);
            if (kind == 0) break;
            if (!add_token(out, &capacity, location, kind)) {
                out->failed = 1;
                out->error = copy_of("out of memory");
                break;
            }
        }
        scanner_finish(scanner);
    }
    PG_CATCH();
    {
        ErrorData* error;
        CurrentMemoryContext = context; /* errfinish left ErrorContext current */
        error = CopyErrorData();
        out->failed = 1;
        out->error = copy_of(error->message != NULL ? error->message : "scan error");
        out->cursor = error->cursorpos;
        FlushErrorState();
    }
    PG_END_TRY();
    pg_query_exit_memory_context(context);
    if (out->failed || out->count == 0) {
        /* no tokens with an error (and none to free when the text held none) */
        free(out->tokens);
        out->tokens = NULL;
        out->count = 0;
    }
}

void pgrail_raw_scan_free(PgrailRawScan* scan) {
    free(scan->tokens);
    free(scan->error);
    scan->tokens = NULL;
    scan->error = NULL;
    scan->count = 0;
}

int pgrail_keyword_kind(int token) {
    for (int index = 0; index < ScanKeywords.num_keywords; ++index)
        if (ScanKeywordTokens[index] == token) return ScanKeywordCategories[index] + 1;
    return 0;
}
