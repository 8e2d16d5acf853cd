// `pgrail passwd NAME --role ROLE`: store an identity's SCRAM verifier in the identities file.
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>

#include <CLI/CLI.hpp>
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "commands.hpp"
#include "pgrail/auth/identities.hpp"
#include "pgrail/auth/identities_writer.hpp"
#include "pgrail/auth/scram.hpp"
#include "pgrail/config/yaml_reader.hpp"

namespace pgrail::cli {

namespace {

struct PasswdOptions {
    std::string name;
    std::string role;
    std::string file = "/etc/pgrail/identities.yaml";
    int iterations = auth::default_scram_iterations;
};

std::string errno_text() { return std::strerror(errno); }

void check_name(const std::string& value, const char* what) {
    if (value.empty()) throw std::runtime_error(fmt::format("the {} must not be empty", what));
    if (value.size() > auth::max_identity_name_length)
        throw std::runtime_error(fmt::format("the {} is longer than {} bytes", what, auth::max_identity_name_length));
    for (const char c : value)
        if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
            throw std::runtime_error(fmt::format("the {} must not contain control characters", what));
}

// One line from fd 0, without its line end; bounded.
std::string read_line(bool* eof) {
    std::string line;
    char c = 0;
    for (;;) {
        const auto n = ::read(STDIN_FILENO, &c, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            *eof = line.empty();
            break;
        }
        if (c == '\n') break;
        if (line.size() > auth::max_password_length)
            throw std::runtime_error(fmt::format("the password is longer than {} bytes", auth::max_password_length));
        line += c;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line;
}

// The terminal's settings while echo is off, for the signal handler (Ctrl-C at the prompt must not
// leave the terminal without echo).
termios saved_terminal{};

extern "C" void restore_terminal_and_die(int signal_number) {
    ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_terminal);  // async-signal-safe
    std::signal(signal_number, SIG_DFL);
    std::raise(signal_number);
}

// Echo off for the terminal while the password is typed, restored on every way out.
class NoEcho {
public:
    NoEcho() {
        if (::tcgetattr(STDIN_FILENO, &saved_terminal) != 0)
            throw std::runtime_error("cannot read the terminal's settings");
        for (const int signal_number : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP})
            previous_[signal_number] = std::signal(signal_number, restore_terminal_and_die);
        termios quiet = saved_terminal;
        quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
        quiet.c_lflag |= ECHONL;
        if (::tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) != 0) throw std::runtime_error("cannot turn off the terminal's echo");
    }
    ~NoEcho() {
        ::tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_terminal);
        for (const int signal_number : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP})
            std::signal(signal_number, previous_[signal_number]);
    }
    NoEcho(const NoEcho&) = delete;
    NoEcho& operator=(const NoEcho&) = delete;

private:
    void (*previous_[NSIG])(int) = {};
};

std::string read_password(const std::string& name) {
    bool eof = false;
    if (::isatty(STDIN_FILENO) == 0) {
        // A script: the first line of stdin is the password (never an argument: ps would show it).
        auto password = read_line(&eof);
        if (eof || password.empty()) throw std::runtime_error("no password on standard input (one line expected)");
        return password;
    }
    NoEcho no_echo;
    std::fprintf(stderr, "Password for identity %s: ", name.c_str());
    std::fflush(stderr);
    auto password = read_line(&eof);
    std::fprintf(stderr, "Again: ");
    std::fflush(stderr);
    const auto again = read_line(&eof);
    if (password.empty()) throw std::runtime_error("the password must not be empty");
    if (password != again) throw std::runtime_error("the passwords do not match");
    return password;
}

// Replaces `path` with `text` atomically: a temporary file beside it, fsync, rename, fsync of the
// directory. A new file gets mode 0600; an existing one keeps its mode (and owner, when root runs this).
void write_atomically(const std::string& path, const std::string& text) {
    const auto target = std::filesystem::path(path);
    const auto dir = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
    struct stat old {};
    const bool existed = ::stat(path.c_str(), &old) == 0;
    std::string temp = (dir / (target.filename().string() + ".XXXXXX")).string();
    const int fd = ::mkstemp(temp.data());  // mode 0600
    if (fd < 0) throw std::runtime_error(fmt::format("cannot create a file in {}: {}", dir.string(), errno_text()));
    const auto fail = [&](const std::string& what) {
        const auto reason = errno_text();
        ::close(fd);
        ::unlink(temp.c_str());
        throw std::runtime_error(fmt::format("{} {}: {}", what, temp, reason));
    };
    std::size_t written = 0;
    while (written < text.size()) {
        const auto n = ::write(fd, text.data() + written, text.size() - written);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) fail("cannot write");
        written += static_cast<std::size_t>(n);
    }
    if (existed) {
        if (::fchmod(fd, old.st_mode & 07777) != 0) fail("cannot set the mode of");
        if (::geteuid() == 0 && ::fchown(fd, old.st_uid, old.st_gid) != 0) fail("cannot set the owner of");
    }
    if (::fsync(fd) != 0) fail("cannot sync");
    if (::close(fd) != 0) {
        ::unlink(temp.c_str());
        throw std::runtime_error(fmt::format("cannot close {}: {}", temp, errno_text()));
    }
    if (::rename(temp.c_str(), path.c_str()) != 0) {
        const auto reason = errno_text();
        ::unlink(temp.c_str());
        throw std::runtime_error(fmt::format("cannot replace {}: {}", path, reason));
    }
    const int dir_fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
    if (dir_fd >= 0) {
        (void)::fsync(dir_fd);
        ::close(dir_fd);
    }
}

void run(const PasswdOptions& options) {
    check_name(options.name, "identity name");
    check_name(options.role, "role name");
    std::string existing;
    if (std::filesystem::exists(options.file)) {
        std::ifstream in(options.file, std::ios::binary);
        if (!in) throw std::runtime_error(fmt::format("cannot read {}", options.file));
        existing.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    // Check the file before asking for a password: a typo'd path or a broken file fails first.
    (void)auth::upsert_identity(existing, options.file, options.name, options.role, "SCRAM-SHA-256$placeholder");
    const auto password = read_password(options.name);
    const auto verifier = auth::make_scram_verifier(password, options.iterations);
    const auto upsert =
        auth::upsert_identity(existing, options.file, options.name, options.role, verifier.to_string());
    write_atomically(options.file, upsert.text);
    std::cout << fmt::format("{} identity '{}' (role {}) in {}\n", upsert.replaced ? "replaced" : "added", options.name,
                             options.role, options.file);
    // The file must load for pgrail serve; say now what is still missing (a role's credentials, say).
    try {
        (void)auth::load_identities_file(options.file, {.read_credentials = false});
    } catch (const config::ConfigError& e) {
        std::cerr << "warning: pgrail will not load the file yet: " << e.what() << '\n';
    }
}

}  // namespace

void add_passwd_command(CLI::App& app) {
    auto options = std::make_shared<PasswdOptions>();
    CLI::App* command = app.add_subcommand(
        "passwd",
        "Add or replace an identity in the identities file (auth.mode: pgrail): reads its password from the terminal "
        "(twice, without echo) or from standard input's first line, and stores only its SCRAM-SHA-256 verifier");
    command->add_option("name", options->name, "The identity's name (what the client sends as its user)")->required();
    command->add_option("--role", options->role, "The server role pgrail logs in as for this identity")->required();
    command->add_option("--identities", options->file, "The identities file (created with mode 0600)")
        ->default_str("/etc/pgrail/identities.yaml");
    command->add_option("--iterations", options->iterations, "SCRAM iteration count")
        ->default_str(std::to_string(auth::default_scram_iterations))
        ->check(CLI::Range(auth::min_new_scram_iterations, auth::max_scram_iterations));
    command->callback([options] { run(*options); });
}

}  // namespace pgrail::cli
