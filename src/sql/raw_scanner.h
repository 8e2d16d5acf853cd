/* PostgreSQL's own scanner (libpg_query's copy of scan.l), called token by token: what
 * pg_query_scan() does, without its second lexing pass, its allocation per token and its protobuf
 * packing (which pgrail then unpacked). C, because PostgreSQL reports a lexing error with
 * siglongjmp (PG_TRY), which must not cross C++ frames. */
#ifndef PGRAIL_SQL_RAW_SCANNER_H
#define PGRAIL_SQL_RAW_SCANNER_H

#ifdef __cplusplus
extern "C" {
#endif

typedef struct PgrailRawToken {
    int start; /* byte offset of the token's first byte */
    int kind;  /* libpg_query's token code (pg_query.proto's Token enum); comments are tokens too */
} PgrailRawToken;

typedef struct PgrailRawScan {
    PgrailRawToken* tokens; /* malloc'd, `count` of them */
    int count;
    int failed;             /* a lexing error (or no memory): no tokens */
    char* error;            /* malloc'd message of the failure (NULL if even that failed) */
    int cursor;             /* the error's 1-based character position, 0 if none */
} PgrailRawScan;

/* Scans the NUL-terminated `text` under the calling thread's scanner settings
 * (standard_conforming_strings, backslash_quote). Free the result with pgrail_raw_scan_free. */
void pgrail_raw_scan(const char* text, PgrailRawScan* out);
void pgrail_raw_scan_free(PgrailRawScan* scan);

/* A token code's keyword category as pg_query.proto's KeywordKind numbers it: 0 not a keyword,
 * 1 unreserved, 2 column name, 3 type or function name, 4 reserved. */
int pgrail_keyword_kind(int token);

#ifdef __cplusplus
}
#endif

#endif
