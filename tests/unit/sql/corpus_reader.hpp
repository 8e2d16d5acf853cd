// Reads tests/data/sql_corpus.txt: each case is SQL followed by one `=>` line per statement.
#pragma once

#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace pgrail::sql::test {

struct Case {
    std::size_t line = 0;             // where the SQL starts in the corpus file
    std::string sql;
    std::vector<std::string> expected;  // one line per statement, without "=> "
};

inline const char* corpus_path() { return PGRAIL_TEST_DATA "/sql_corpus.txt"; }

inline std::vector<Case> read_corpus(std::vector<std::string>* raw_lines = nullptr) {
    std::ifstream file(corpus_path());
    REQUIRE(file.good());
    std::vector<Case> cases;
    std::string line;
    std::size_t number = 0;
    bool in_case = false;
    while (std::getline(file, line)) {
        ++number;
        if (raw_lines != nullptr) raw_lines->push_back(line);
        if (line.empty() || line.starts_with("#")) {
            in_case = false;
            continue;
        }
        if (line.starts_with("=>")) {
            REQUIRE(!cases.empty());
            cases.back().expected.push_back(line.size() > 3 ? line.substr(3) : std::string());
            in_case = false;
            continue;
        }
        if (in_case) {
            cases.back().sql += "\n" + line;
        } else {
            cases.push_back(Case{number, line, {}});
            in_case = true;
        }
    }
    return cases;
}

}  // namespace pgrail::sql::test
