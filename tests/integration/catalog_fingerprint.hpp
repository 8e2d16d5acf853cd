// A fingerprint of a database's catalog, taken straight from PostgreSQL: relations, columns,
// defaults, constraints, indexes, inheritance, sequences, ACLs, namespaces, functions, types,
// triggers, rules, event triggers, row policies, roles, settings, comments and other objects
// (temporary schemas left out, initdb's objects left out where only a superuser could change
// them), and the rows of chosen tables. Equal before and after: nothing changed.
#pragma once

#include <algorithm>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <libpq-fe.h>

#include "cluster.hpp"

namespace pgrail::test {

inline const std::string not_temp = " !~ '^pg_(toast_)?temp_'";

inline const std::vector<std::pair<std::string, std::string>> catalog_sections = {
    {"relations",
     "SELECT format('%s.%s kind=%s persistence=%s owner=%s acl=%s options=%s rls=%s/%s replident=%s partition=%s', "
     "n.nspname, c.relname, c.relkind, c.relpersistence, pg_get_userbyid(c.relowner), c.relacl, c.reloptions, "
     "c.relrowsecurity, c.relforcerowsecurity, c.relreplident, c.relispartition) "
     "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname" + not_temp +
         " AND n.nspname <> 'pg_toast'"},
    {"columns",
     "SELECT format('%s.%s.%s %s collation=%s notnull=%s identity=%s generated=%s hasdef=%s acl=%s options=%s', "
     "n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod), a.attcollation, a.attnotnull, "
     "a.attidentity, a.attgenerated, a.atthasdef, a.attacl, a.attoptions) "
     "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
     "WHERE a.attnum > 0 AND NOT a.attisdropped AND c.oid >= 16384 AND n.nspname" + not_temp +
         " AND n.nspname <> 'pg_toast'"},
    {"column defaults",
     "SELECT format('%s.%s.%s = %s', n.nspname, c.relname, a.attname, pg_get_expr(d.adbin, d.adrelid)) "
     "FROM pg_attrdef d JOIN pg_class c ON c.oid = d.adrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
     "JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum WHERE n.nspname" + not_temp},
    {"constraints",
     "SELECT format('%s on %s.%s / %s: %s', co.conname, n.nspname, c.relname, co.contypid::regtype, "
     "pg_get_constraintdef(co.oid)) FROM pg_constraint co LEFT JOIN pg_class c ON c.oid = co.conrelid "
     "LEFT JOIN pg_namespace n ON n.oid = c.relnamespace WHERE co.oid >= 16384 AND coalesce(n.nspname, '')" +
         not_temp},
    {"indexes",
     "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
     "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE i.indexrelid >= 16384 AND n.nspname" + not_temp +
         " AND n.nspname <> 'pg_toast'"},
    {"inheritance",
     "SELECT format('%s inherits %s.%s', i.inhrelid::regclass, n.nspname, c.relname) FROM pg_inherits i "
     "JOIN pg_class c ON c.oid = i.inhparent JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname" +
         not_temp},
    {"sequences",
     "SELECT format('%s.%s start=%s increment=%s min=%s max=%s cache=%s cycle=%s', n.nspname, c.relname, "
     "s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle) FROM pg_sequence s "
     "JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname" +
         not_temp},
    {"namespaces",
     "SELECT format('%s owner=%s acl=%s', nspname, pg_get_userbyid(nspowner), nspacl) FROM pg_namespace "
     "WHERE nspname" + not_temp},
    {"functions",
     "SELECT format('%s.%s(%s) kind=%s owner=%s secdef=%s volatile=%s leakproof=%s config=%s acl=%s lang=%s "
     "src=%s body=%s', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), p.prokind, "
     "pg_get_userbyid(p.proowner), p.prosecdef, p.provolatile, p.proleakproof, p.proconfig, p.proacl, l.lanname, "
     "md5(p.prosrc), md5(coalesce(pg_get_function_sqlbody(p.oid), ''))) FROM pg_proc p "
     "JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang "
     "WHERE p.oid >= 16384 AND n.nspname" + not_temp},
    {"types",
     "SELECT format('%s.%s type=%s owner=%s acl=%s', n.nspname, t.typname, t.typtype, pg_get_userbyid(t.typowner), "
     "t.typacl) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid >= 16384 AND n.nspname" +
         not_temp + " AND n.nspname <> 'pg_toast'"},
    {"triggers",
     "SELECT format('%s enabled=%s %s', t.tgname, t.tgenabled, pg_get_triggerdef(t.oid)) FROM pg_trigger t "
     "JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
     "WHERE NOT t.tgisinternal AND n.nspname" + not_temp},
    {"rules",
     "SELECT format('%s.%s %s %s', n.nspname, c.relname, r.rulename, md5(pg_get_ruledef(r.oid))) FROM pg_rewrite r "
     "JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace "
     "WHERE r.oid >= 16384 AND n.nspname" + not_temp},
    {"event triggers",
     "SELECT format('%s %s owner=%s function=%s enabled=%s tags=%s', evtname, evtevent, pg_get_userbyid(evtowner), "
     "evtfoid::regproc, evtenabled, evttags) FROM pg_event_trigger"},
    {"row policies",
     "SELECT format('%s.%s %s cmd=%s permissive=%s roles=%s using=%s check=%s', n.nspname, c.relname, p.polname, "
     "p.polcmd, p.polpermissive, p.polroles::regrole[], pg_get_expr(p.polqual, p.polrelid), "
     "pg_get_expr(p.polwithcheck, p.polrelid)) FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid "
     "JOIN pg_namespace n ON n.oid = c.relnamespace"},
    {"roles",
     "SELECT format('%s super=%s inherit=%s createrole=%s createdb=%s login=%s replication=%s bypassrls=%s "
     "connlimit=%s valid=%s password=%s', rolname, rolsuper, rolinherit, rolcreaterole, rolcreatedb, rolcanlogin, "
     "rolreplication, rolbypassrls, rolconnlimit, rolvaliduntil, md5(coalesce(rolpassword, ''))) FROM pg_authid"},
    {"memberships",
     "SELECT format('%s member of %s admin=%s grantor=%s', pg_get_userbyid(member), pg_get_userbyid(roleid), "
     "admin_option, pg_get_userbyid(grantor)) FROM pg_auth_members"},
    {"role settings",
     "SELECT format('%s in %s: %s', CASE WHEN setrole = 0 THEN '*' ELSE pg_get_userbyid(setrole) END, "
     "coalesce((SELECT datname FROM pg_database WHERE oid = setdatabase), '*'), setconfig) FROM pg_db_role_setting"},
    {"databases",
     "SELECT format('%s owner=%s acl=%s allowconn=%s connlimit=%s template=%s', datname, pg_get_userbyid(datdba), "
     "datacl, datallowconn, datconnlimit, datistemplate) FROM pg_database"},
    {"default acls",
     "SELECT format('%s in %s %s: %s', pg_get_userbyid(defaclrole), CASE WHEN defaclnamespace = 0 THEN '*' "
     "ELSE defaclnamespace::regnamespace::text END, defaclobjtype, defaclacl) FROM pg_default_acl"},
    {"comments",
     "SELECT format('%s: %s', pg_describe_object(classoid, objoid, objsubid), description) FROM pg_description "
     "WHERE objoid >= 16384 OR classoid = 'pg_namespace'::regclass"},
    {"shared comments",
     "SELECT format('%s: %s', pg_describe_object(classoid, objoid, 0), description) FROM pg_shdescription"},
    {"large objects",
     "SELECT format('%s owner=%s acl=%s', oid, pg_get_userbyid(lomowner), lomacl) FROM pg_largeobject_metadata"},
    {"other objects",
     "SELECT format('extension %s %s owner=%s schema=%s', extname, extversion, pg_get_userbyid(extowner), "
     "extnamespace::regnamespace) FROM pg_extension "
     "UNION ALL SELECT format('language %s trusted=%s owner=%s acl=%s', lanname, lanpltrusted, "
     "pg_get_userbyid(lanowner), lanacl) FROM pg_language "
     "UNION ALL SELECT format('fdw %s owner=%s acl=%s', fdwname, pg_get_userbyid(fdwowner), fdwacl) "
     "FROM pg_foreign_data_wrapper "
     "UNION ALL SELECT format('server %s owner=%s acl=%s', srvname, pg_get_userbyid(srvowner), srvacl) "
     "FROM pg_foreign_server "
     "UNION ALL SELECT format('user mapping %s for server %s', umuser, umserver) FROM pg_user_mapping "
     "UNION ALL SELECT format('publication %s owner=%s all=%s', pubname, pg_get_userbyid(pubowner), puballtables) "
     "FROM pg_publication "
     "UNION ALL SELECT format('publication %s table %s', p.pubname, r.prrelid::regclass) FROM pg_publication_rel r "
     "JOIN pg_publication p ON p.oid = r.prpubid "
     "UNION ALL SELECT format('subscription %s owner=%s', subname, pg_get_userbyid(subowner)) FROM pg_subscription "
     "UNION ALL SELECT format('cast %s -> %s via %s', castsource::regtype, casttarget::regtype, castfunc::regproc) "
     "FROM pg_cast WHERE oid >= 16384 "
     "UNION ALL SELECT format('operator %s.%s(%s, %s) owner=%s', oprnamespace::regnamespace, oprname, "
     "oprleft::regtype, oprright::regtype, pg_get_userbyid(oprowner)) FROM pg_operator WHERE oid >= 16384 "
     "UNION ALL SELECT format('collation %s.%s owner=%s', collnamespace::regnamespace, collname, "
     "pg_get_userbyid(collowner)) FROM pg_collation WHERE oid >= 16384 "
     "UNION ALL SELECT format('conversion %s.%s', connamespace::regnamespace, conname) FROM pg_conversion "
     "WHERE oid >= 16384 "
     "UNION ALL SELECT format('text search configuration %s.%s', cfgnamespace::regnamespace, cfgname) "
     "FROM pg_ts_config WHERE oid >= 16384 "
     "UNION ALL SELECT format('text search dictionary %s.%s', dictnamespace::regnamespace, dictname) "
     "FROM pg_ts_dict WHERE oid >= 16384 "
     "UNION ALL SELECT format('text search parser %s', prsname) FROM pg_ts_parser WHERE oid >= 16384 "
     "UNION ALL SELECT format('text search template %s', tmplname) FROM pg_ts_template WHERE oid >= 16384 "
     "UNION ALL SELECT format('operator class %s', opcname) FROM pg_opclass WHERE oid >= 16384 "
     "UNION ALL SELECT format('operator family %s', opfname) FROM pg_opfamily WHERE oid >= 16384 "
     "UNION ALL SELECT format('access method %s', amname) FROM pg_am WHERE oid >= 16384 "
     "UNION ALL SELECT format('statistics %s.%s on %s', stxnamespace::regnamespace, stxname, stxrelid::regclass) "
     "FROM pg_statistic_ext "
     "UNION ALL SELECT format('parameter %s acl=%s', parname, paracl) FROM pg_parameter_acl "
     "UNION ALL SELECT format('tablespace %s owner=%s acl=%s', spcname, pg_get_userbyid(spcowner), spcacl) "
     "FROM pg_tablespace"},
};

inline std::string catalog_query() {
    std::string sql;
    for (const auto& [name, query] : catalog_sections) {
        if (!sql.empty()) sql += " UNION ALL ";
        sql += "SELECT '" + name + "', (SELECT string_agg(line, E'\\n' ORDER BY line) FROM (" + query +
               ") AS s(line))";
    }
    return sql;
}

struct Fingerprint {
    std::map<std::string, std::string> sections;
    bool locked = false;  // a section waited for a lock the case's session holds
    bool operator==(const Fingerprint& other) const { return sections == other.sections; }
};

inline std::string error_text(const PGresult* result) {
    const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
    const char* message = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
    return "ERROR " + std::string(state != nullptr ? state : "?????") + ": " + (message != nullptr ? message : "");
}

// `data_tables`: tables whose rows count too (ordered text of every row).
inline Fingerprint take_fingerprint(PGconn* conn, const std::vector<std::string>& data_tables) {
    Fingerprint fingerprint;
    auto note_error = [&](const std::string& section, const PGresult* result) {
        const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
        if (state != nullptr && std::string(state) == "55P03") fingerprint.locked = true;
        fingerprint.sections[section] = error_text(result);
    };
    {
        Result result(PQexec(conn, catalog_query().c_str()));
        if (PQresultStatus(result.get()) != PGRES_TUPLES_OK) {
            note_error("catalog", result.get());
        } else {
            for (int row = 0; row < PQntuples(result.get()); ++row) {
                fingerprint.sections[PQgetvalue(result.get(), row, 0)] = PQgetvalue(result.get(), row, 1);
            }
        }
    }
    for (const auto& table : data_tables) {
        const auto sql = "SELECT string_agg(t::text, E'\\n' ORDER BY t::text) FROM " + table + " AS t";
        Result result(PQexec(conn, sql.c_str()));
        if (PQresultStatus(result.get()) != PGRES_TUPLES_OK) {
            note_error("rows of " + table, result.get());
        } else {
            fingerprint.sections["rows of " + table] = PQgetvalue(result.get(), 0, 0);
        }
    }
    return fingerprint;
}

inline std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

// "+ line" for what appeared, "- line" for what went, per section; at most `limit` lines.
inline std::string describe_difference(const Fingerprint& before, const Fingerprint& after, std::size_t limit = 24) {
    std::set<std::string> names;
    for (const auto& [name, text] : before.sections) names.insert(name);
    for (const auto& [name, text] : after.sections) names.insert(name);
    std::string out;
    std::size_t shown = 0;
    std::size_t hidden = 0;
    for (const auto& name : names) {
        const auto was = before.sections.contains(name) ? before.sections.at(name) : "(missing)";
        const auto is = after.sections.contains(name) ? after.sections.at(name) : "(missing)";
        if (was == is) continue;
        auto old_lines = lines_of(was);
        auto new_lines = lines_of(is);
        std::sort(old_lines.begin(), old_lines.end());
        std::sort(new_lines.begin(), new_lines.end());
        std::vector<std::string> gone;
        std::vector<std::string> came;
        std::set_difference(old_lines.begin(), old_lines.end(), new_lines.begin(), new_lines.end(),
                            std::back_inserter(gone));
        std::set_difference(new_lines.begin(), new_lines.end(), old_lines.begin(), old_lines.end(),
                            std::back_inserter(came));
        for (const auto& line : came) {
            if (shown++ < limit) out += "    " + name + ": + " + line + "\n"; else ++hidden;
        }
        for (const auto& line : gone) {
            if (shown++ < limit) out += "    " + name + ": - " + line + "\n"; else ++hidden;
        }
    }
    if (hidden > 0) out += "    (" + std::to_string(hidden) + " more lines)\n";
    return out;
}

}  // namespace pgrail::test
