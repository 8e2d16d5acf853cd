// Client-facing cancel keys: the backend's real pid, pgrail's own secret, routed by both.
#include <catch2/catch.hpp>

#include "pgrail/proxy/cancel_registry.hpp"

using pgrail::proxy::CancelRegistry;
using pgrail::protocol::BackendKey;

TEST_CASE("a client key carries the real pid and a secret of pgrail's own", "[proxy][cancel]") {
    CancelRegistry registry;
    const BackendKey upstream{4242, 0x11223344};
    const auto client = registry.add(upstream);
    CHECK(client.pid == upstream.pid);
    CHECK(client.secret != upstream.secret);  // 1 in 2^32 to fail; a fixed secret would always
    const auto found = registry.find(client);
    REQUIRE(found);
    CHECK(found->pid == upstream.pid);
    CHECK(found->secret == upstream.secret);
}

TEST_CASE("the right pid with a wrong secret reaches nothing", "[proxy][cancel]") {
    CancelRegistry registry;
    const BackendKey upstream{4242, 0x11223344};
    const auto client = registry.add(upstream);
    CHECK_FALSE(registry.find({client.pid, client.secret + 1}));
    CHECK_FALSE(registry.find(upstream));  // the server's own secret is not a key to pgrail
    CHECK_FALSE(registry.find({client.pid + 1, client.secret}));
    registry.remove({client.pid, client.secret + 1});  // a wrong secret removes nothing either
    CHECK(registry.find(client));
    registry.remove(client);
    CHECK_FALSE(registry.find(client));
}

TEST_CASE("a pid reused while its old key is still registered keeps both apart", "[proxy][cancel]") {
    CancelRegistry registry;
    const auto old_key = registry.add({777, 1});
    const auto new_key = registry.add({777, 2});
    REQUIRE(old_key.secret != new_key.secret);
    CHECK(registry.find(old_key)->secret == 1);
    CHECK(registry.find(new_key)->secret == 2);
    registry.remove(old_key);
    CHECK_FALSE(registry.find(old_key));
    CHECK(registry.find(new_key)->secret == 2);
}

TEST_CASE("abandon raises only the flag of the matching key", "[proxy][cancel]") {
    CancelRegistry registry;
    const auto key = registry.add({99, 5});
    auto flag = std::make_shared<std::atomic<bool>>(false);
    registry.set_abandon_flag(key, flag);
    registry.abandon({key.pid, key.secret ^ 1});
    CHECK_FALSE(flag->load());
    registry.abandon(key);
    CHECK(flag->load());
}
