// `pgrail audit`: read audit files (rotated and gzip ones too), filter, follow, summarise.
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands.hpp"
#include "pgrail/audit/audit_reader.hpp"
#include "pgrail/config/serve_config.hpp"

namespace pgrail::cli {

namespace {

struct AuditOptions {
    std::vector<std::string> files;
    std::string config;
    bool rotated = false;
    bool follow = false;
    bool json = false;
    bool summary = false;
    std::size_t top = 10;
    std::string since;
    std::string until;
    audit::Filter filter;
};

struct Counters {
    std::uint64_t unreadable = 0;  // lines that are not a JSON object
    std::uint64_t too_long = 0;
};

// Reads one reader's lines to its current end, printing or counting the matching records.
void drain(audit::LineReader& reader, const AuditOptions& options, audit::Summary& summary, Counters& counters,
           bool finish) {
    std::string line;
    while (reader.next(line, finish)) {
        if (line.empty() || !options.filter.may_match(line)) continue;
        const auto record = audit::Record::parse(line);
        if (!record) {
            ++counters.unreadable;
            continue;
        }
        if (!options.filter.matches(*record)) continue;
        if (options.summary) {
            summary.add(*record);
        } else if (options.json) {
            std::cout << line << '\n';
        } else {
            std::cout << audit::format_record(*record) << '\n';
        }
    }
    if (options.follow) std::cout << std::flush;
}

// Follows `path` like `tail -F`: new lines as they come, the new file after a rotation.
[[noreturn]] void follow(const std::string& path, std::unique_ptr<audit::LineReader> reader,
                         const AuditOptions& options, audit::Summary& summary, Counters& counters) {
    while (true) {
        if (reader) {
            drain(*reader, options, summary, counters, false);
            // A rotated file is read to its end before the new one is opened.
            if (reader->replaced()) {
                drain(*reader, options, summary, counters, true);
                reader.reset();
            }
        }
        if (!reader) {
            try {
                reader = std::make_unique<audit::LineReader>(path);
            } catch (const std::exception&) {
                // Not there yet (between logrotate's rename and its create): try again.
            }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
}

void run_audit(AuditOptions& options) {
    const auto now = std::chrono::system_clock::now();
    for (auto [text, bound] : {std::pair{&options.since, &options.filter.since}, std::pair{&options.until, &options.filter.until}}) {
        if (text->empty()) continue;
        *bound = audit::parse_time_bound(*text, now);
        if (!*bound)
            throw std::runtime_error(fmt::format("invalid time \"{}\": give an RFC 3339 time or a prefix of one "
                                                 "(2026-12-04, 2026-12-04T22:54) or a duration before now (90s, 15m, 2h, 7d)",
                                                 *text));
    }
    if (options.files.empty()) {
        if (options.config.empty()) throw std::runtime_error("name an audit file, or the configuration with --config");
        const auto config = config::load_serve_config(options.config);
        if (config.audit_file == "-") throw std::runtime_error("the configuration's audit.file is stdout (\"-\")");
        options.files.push_back(config.audit_file);
    }
    if (options.follow && options.files.size() != 1) throw std::runtime_error("--follow reads one file");
    std::vector<std::string> paths;
    for (const auto& file : options.files) {
        if (!options.rotated) {
            paths.push_back(file);
            continue;
        }
        for (const auto& path : audit::rotated_set(file)) paths.push_back(path.string());
    }

    audit::Summary summary;
    Counters counters;
    for (std::size_t i = 0; i < paths.size(); ++i) {
        auto reader = std::make_unique<audit::LineReader>(paths[i]);
        const bool live = options.follow && i + 1 == paths.size();
        drain(*reader, options, summary, counters, !live);
        counters.too_long += reader->skipped_long_lines();
        if (live) follow(paths[i], std::move(reader), options, summary, counters);
    }
    if (options.summary) {
        if (options.json) std::cout << summary.to_json(options.top).dump(2) << '\n';
        else summary.print(std::cout, options.top);
    }
    if (counters.unreadable > 0 || counters.too_long > 0)
        std::cerr << fmt::format("pgrail audit: skipped {} line(s) that are not a JSON object and {} longer than {} "
                                 "bytes\n",
                                 counters.unreadable, counters.too_long, audit::LineReader::default_max_line);
}

}  // namespace

void add_audit_command(CLI::App& app) {
    auto options = std::make_shared<AuditOptions>();
    CLI::App* command = app.add_subcommand(
        "audit", "Read audit files (plain or gzip): filter, follow (-f), summarise (--summary), or print JSON lines");
    command->add_option("files", options->files, "Audit files, read in the order given (default: the config's audit.file)");
    command->add_option("-c,--config", options->config, "pgrail's configuration: read its audit.file");
    command->add_flag("--rotated", options->rotated,
                      "Also read each file's rotated predecessors (FILE.N, FILE.N.gz), oldest first");
    command->add_flag("-f,--follow", options->follow, "Keep reading new lines as they are written, across rotations");
    command->add_option("--user", options->filter.users, "Only records of this user (repeatable)");
    command->add_option("--identity", options->filter.identities,
                        "Only records of this identity (auth.mode pgrail; repeatable)");
    command->add_option("--rule", options->filter.rules, "Only records of this policy rule (repeatable)");
    command->add_option("--decision", options->filter.decisions, "Only this decision: deny or allow (repeatable)");
    command->add_option("--event", options->filter.events, "Only this event, e.g. statement_refused (repeatable)");
    command->add_option("--class", options->filter.classes, "Only this statement class, e.g. ddl (repeatable)");
    command->add_option("--since", options->since, "From this time on: RFC 3339 (or a prefix), or a duration ago (2h)");
    command->add_option("--until", options->until, "Before this time: RFC 3339 (or a prefix), or a duration ago");
    command->add_flag("--summary", options->summary,
                      "Print counts instead of records: events, refusals per rule and user, top refused statements; "
                      "under auth.mode pgrail also per identity");
    command->add_option("--top", options->top, "How many statements the summary lists")->default_str("10");
    command->add_flag("--json", options->json, "Records as their JSON lines; the summary as one JSON object");
    command->callback([options] { run_audit(*options); });
}

}  // namespace pgrail::cli
