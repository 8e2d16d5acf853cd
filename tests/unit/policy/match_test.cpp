// Globs, name sets and CIDRs.
#include <catch2/catch.hpp>

#include "pgrail/policy/match.hpp"

using namespace pgrail::policy;

TEST_CASE("glob_match: * and ? and literals", "[policy][match]") {
    CHECK(glob_match("agent", "agent"));
    CHECK_FALSE(glob_match("agent", "agents"));
    CHECK(glob_match("agent*", "agent"));
    CHECK(glob_match("agent*", "agent_42"));
    CHECK(glob_match("*", ""));
    CHECK(glob_match("*-bot", "langchain-bot"));
    CHECK_FALSE(glob_match("*-bot", "langchain-bots"));
    CHECK(glob_match("a*b*c", "aXXbYYbc"));
    CHECK(glob_match("a?c", "abc"));
    CHECK_FALSE(glob_match("a?c", "ac"));
    CHECK_FALSE(glob_match("", "x"));
    CHECK(glob_match("dblink*", "dblink_exec"));
}

TEST_CASE("NameSet: exact names hashed, globs tried", "[policy][match]") {
    NameSet set;
    set.insert("pg_read_file");
    set.insert("dblink*");
    CHECK(set.contains("pg_read_file"));
    CHECK(set.contains("dblink"));
    CHECK(set.contains("dblink_connect_u"));
    CHECK_FALSE(set.contains("pg_read"));
    REQUIRE(set.find("dblink_exec") != nullptr);
    CHECK(*set.find("dblink_exec") == "dblink*");
    set.erase("dblink*");
    CHECK_FALSE(set.contains("dblink"));
    CHECK(set.sorted() == std::vector<std::string>{"pg_read_file"});
}

TEST_CASE("Cidr: IPv4, IPv6, mapped addresses, host bits", "[policy][match]") {
    auto net = Cidr::parse("10.0.0.0/8");
    REQUIRE(net);
    CHECK(net->contains(*parse_address("10.200.1.2")));
    CHECK(net->contains(*parse_address("::ffff:10.1.2.3")));
    CHECK_FALSE(net->contains(*parse_address("11.0.0.1")));
    CHECK_FALSE(net->contains(*parse_address("2001:db8::1")));
    CHECK(net->to_string() == "10.0.0.0/8");

    auto host = Cidr::parse("192.168.1.7");
    REQUIRE(host);
    CHECK(host->contains(*parse_address("192.168.1.7")));
    CHECK_FALSE(host->contains(*parse_address("192.168.1.8")));

    auto v6 = Cidr::parse("2001:db8::/32");
    REQUIRE(v6);
    CHECK(v6->contains(*parse_address("2001:db8:1::5")));
    CHECK_FALSE(v6->contains(*parse_address("2001:db9::5")));

    auto odd = Cidr::parse("172.16.0.0/12");
    REQUIRE(odd);
    CHECK(odd->contains(*parse_address("172.31.255.255")));
    CHECK_FALSE(odd->contains(*parse_address("172.32.0.0")));

    auto all = Cidr::parse("::/0");
    REQUIRE(all);
    CHECK(all->matches_everything());
    CHECK_FALSE(Cidr::parse("0.0.0.0/0")->matches_everything());  // IPv4 only

    CHECK_FALSE(Cidr::parse("10.0.0.1/8"));   // host bits set
    CHECK_FALSE(Cidr::parse("10.0.0.0/33"));
    CHECK_FALSE(Cidr::parse("10.0.0/8"));
    CHECK_FALSE(Cidr::parse("10.0.0.0/"));
    CHECK_FALSE(Cidr::parse("10.0.0.0/8x"));
    CHECK_FALSE(Cidr::parse("localhost"));
    CHECK_FALSE(parse_address("/var/run/postgresql"));
    CHECK_FALSE(parse_address(""));
}
