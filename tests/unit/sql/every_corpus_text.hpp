// Every SQL text of the test data, for checks that compare two readings of the same text: the
// corpus's cases, each statement of an adversarial case and the whole case, the statements
// generated from PostgreSQL 15's grammar, the analyzer fuzzer's seeds, and (for a wider check by
// hand) the *.sql files of the directory in PGRAIL_PARSE_TREE_EXTRA.
#pragma once

#include <pg_query.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "corpus_reader.hpp"

namespace pgrail::sql::test {

inline std::vector<std::string> every_corpus_text() {
    std::vector<std::string> texts;
    for (const auto& entry : read_corpus()) texts.push_back(entry.sql);
    // The adversarial corpus: each statement of a case, and the whole case as one text.
    std::ifstream bypass(PGRAIL_TEST_DATA "/bypass_corpus.txt");
    REQUIRE(bypass.good());
    for (std::string line; std::getline(bypass, line);) {
        if (line.empty() || line.starts_with("#")) continue;
        std::size_t bar = 0;
        for (int field = 0; field < 4 && bar != std::string::npos; ++field) bar = line.find('|', bar + 1);
        if (bar == std::string::npos) continue;
        std::string text = line.substr(bar + 1);
        if (const auto undo = text.find("<UNDO>"); undo != std::string::npos) text.resize(undo);
        std::size_t start = 0;
        for (std::size_t next; (next = text.find("<NEXT>", start)) != std::string::npos; start = next + 6) {
            texts.push_back(text.substr(start, next - start));
        }
        texts.push_back(text.substr(start));
    }
    // Statements generated from PostgreSQL 15's grammar (every object type and statement form).
    std::ifstream grammar(PGRAIL_TEST_DATA "/grammar_corpus.jsonl");
    REQUIRE(grammar.good());
    for (std::string line; std::getline(grammar, line);) texts.push_back(nlohmann::json::parse(line).at("sql"));
    // The analyzer fuzzer's seeds.
    for (const auto& file : std::filesystem::directory_iterator(PGRAIL_TEST_DATA "/../fuzz/corpus/analyze")) {
        std::ifstream in(file.path(), std::ios::binary);
        std::stringstream content;
        content << in.rdbuf();
        const std::string text = content.str();
        if (text.find('\0') == std::string::npos) texts.push_back(text);
    }
    // More, for a wider check by hand: every statement of the *.sql files in
    // PGRAIL_PARSE_TREE_EXTRA (e.g. PostgreSQL's regression tests), split with the scanner.
    if (const char* extra = std::getenv("PGRAIL_PARSE_TREE_EXTRA"); extra != nullptr) {
        for (const auto& file : std::filesystem::directory_iterator(extra)) {
            if (file.path().extension() != ".sql") continue;
            std::ifstream in(file.path(), std::ios::binary);
            std::stringstream content;
            content << in.rdbuf();
            const std::string text = content.str();
            PgQuerySplitResult split = pg_query_split_with_scanner(text.c_str());
            for (int index = 0; split.error == nullptr && index < split.n_stmts; ++index) {
                texts.push_back(text.substr(static_cast<std::size_t>(split.stmts[index]->stmt_location),
                                            static_cast<std::size_t>(split.stmts[index]->stmt_len)));
            }
            pg_query_free_split_result(split);
        }
    }
    return texts;
}

}  // namespace pgrail::sql::test
