// The policy's cost per statement (not a test): evaluate() for a typical SELECT.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>

#include "pgrail/policy/evaluator.hpp"
#include "pgrail/policy/loader.hpp"
#include "pgrail/sql/analyzer.hpp"

int main(int argc, char** argv) {
    const std::string policy_file = argc > 1 ? argv[1] : "policies/default.yaml";
    const auto policy = pgrail::policy::load_policy_file(policy_file);
    const pgrail::policy::SessionInfo session{"agent", "app", "pgbench", "10.1.2.3"};
    const auto analysis = pgrail::sql::analyze("SELECT lower(email), now() FROM public.profiles WHERE id = 42");
    // The best of several batches: on a shared machine the minimum is the cost.
    constexpr int batches = 7, rounds = 100000;
    double best_ns = 1e9;
    std::size_t allowed = 0;
    for (int batch = 0; batch < batches; ++batch) {
        const auto start = std::chrono::steady_clock::now();
        for (int round = 0; round < rounds; ++round)
            allowed += pgrail::policy::evaluate_all(*policy, session, analysis).allowed() ? 1 : 0;
        const std::chrono::duration<double, std::nano> elapsed = std::chrono::steady_clock::now() - start;
        best_ns = std::min(best_ns, elapsed.count() / rounds);
    }
    std::printf("evaluate_all(SELECT) with %s: %.1f ns per call (best of %d batches of %d; %zu allowed)\n",
                policy_file.c_str(), best_ns, batches, rounds, allowed);
}
