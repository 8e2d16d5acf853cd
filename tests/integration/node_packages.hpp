// npm packages that integration tests drive (real JavaScript clients and tools), pinned and
// installed once per machine into a folder of the test's own.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace pgrail::test {

// Why `packages` ("name@version", scoped names too) cannot be used from `dir`/node_modules, or ""
// once they are installed there (npm install runs only when one is missing).
inline std::string node_packages_unavailable(const std::string& dir, const std::vector<std::string>& packages) {
    if (std::system("node --version >/dev/null 2>&1") != 0) return "node is not installed (apt-get install nodejs npm)";
    std::string listed;
    for (const auto& package : packages) listed += (listed.empty() ? "" : " ") + package;
    const auto installed = [&] {
        for (const auto& package : packages) {
            const auto name = package.substr(0, package.rfind('@'));  // "@scope/name@1.2" -> "@scope/name"
            if (!std::filesystem::exists(dir + "/node_modules/" + name + "/package.json")) return false;
        }
        return true;
    };
    if (installed()) return "";
    if (std::system("npm --version >/dev/null 2>&1") != 0) return "npm is not installed (apt-get install npm)";
    const std::string install =
        "npm install --prefix " + dir + " --no-audit --no-fund --silent " + listed + " >/dev/null 2>&1";
    if (std::system(install.c_str()) != 0 || !installed()) return "npm could not install " + listed;
    return "";
}

}  // namespace pgrail::test
