// Drives node-postgres (pg) or postgres.js (postgres) through pgrail's TLS client leg, as their users
// configure them, and reports what the driver saw (tests/integration/tls_js_test.cpp, [tls_js]).
// Usage: node tls_client.js <node_modules dir> <JSON settings>
// settings: {driver: "pg"|"postgres", host, port, database, user, password, ca: file or null (null: no TLS),
//            servername, scenario: "session"|"connect", table: what the refused DROP TABLE names}
// Prints one JSON line: {"ok": true, ...what was seen} or {"ok": false, "error": {message, code, ...}}.
//   session: connects, then the server leg's TLS as pg_stat_ssl reports it, a simple query, a
//            parameterised (extended protocol) query, a refused DDL by each protocol (the driver's
//            error: code, message, detail, hint) and a query after each refusal.
//   connect: connects and runs one query; for the refused connections (wrong CA, no TLS).
'use strict';
const fs = require('fs');
const path = require('path');

const [modules, settingsText] = process.argv.slice(2);
const settings = JSON.parse(settingsText);
const load = (name) => require(path.join(modules, name));

// The options node's tls.connect gets: verify-full (the chain against `ca`, the name against servername).
const ssl = settings.ca === null ? false
    : { ca: fs.readFileSync(settings.ca, 'utf8'), rejectUnauthorized: true, servername: settings.servername };

// What a client's code sees of a driver's error (both drivers put PostgreSQL's fields on the error).
function describe(error) {
    if (!error) return null;
    return { message: String(error.message || error), code: error.code === undefined ? null : String(error.code),
             detail: error.detail === undefined ? null : error.detail,
             hint: error.hint === undefined ? null : error.hint, severity: error.severity || null };
}

// One driver behind four operations, so that both run the same scenario.
async function openPg() {
    const { Client } = load('pg');
    const client = new Client({ host: settings.host, port: settings.port, database: settings.database,
                                user: settings.user, password: settings.password, ssl,
                                connectionTimeoutMillis: 20000 });
    // pg emits 'error' for a failure after connect; a listener keeps it from ending the process.
    client.on('error', () => {});
    await client.connect();
    const stream = client.connection.stream;
    return {
        tls: { encrypted: stream.encrypted === true,
               protocol: typeof stream.getProtocol === 'function' ? stream.getProtocol() : null },
        // No values: pg sends a simple Query.
        simple: async (text) => (await client.query(text)).rows,
        // Values, or queryMode extended: Parse, Bind, Describe, Execute, Sync.
        extended: async (text, values) => (await client.query({ text, values, queryMode: 'extended' })).rows,
        close: () => client.end(),
    };
}

async function openPostgresJs() {
    const postgres = load('postgres');
    const sql = postgres({ host: settings.host, port: settings.port, database: settings.database,
                           username: settings.user, password: settings.password, ssl, max: 1,
                           connect_timeout: 20, onnotice: () => {} });
    // postgres.js connects lazily: the first query opens the connection.
    await sql.unsafe('SELECT 1');
    return {
        tls: null,  // postgres.js does not expose its socket; `require` on pgrail's side proves TLS.
        // unsafe without parameters: the simple protocol.
        simple: async (text) => Array.from(await sql.unsafe(text)),
        // simple: false: the extended protocol even without parameters (unnamed statements, as prepare: false).
        extended: async (text, values) => Array.from(await sql.unsafe(text, values, { simple: false, prepare: false })),
        close: () => sql.end({ timeout: 5 }),
    };
}

async function refusal(run) {
    try {
        await run();
        return { refused: false };
    } catch (error) {
        return { refused: true, error: describe(error) };
    }
}

async function main() {
    const db = settings.driver === 'pg' ? await openPg() : await openPostgresJs();
    try {
        if (settings.scenario === 'connect') return { ok: true, answer: (await db.simple('SELECT 42 AS answer'))[0].answer };
        const seen = { ok: true, tls: db.tls };
        seen.server_leg_ssl = (await db.simple('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()'))[0].ssl;
        seen.simple = (await db.simple('SELECT 40 + 2 AS answer'))[0].answer;
        seen.extended = String((await db.extended('SELECT $1::int + $2::int AS sum', [40, 2]))[0].sum);
        seen.extended_rows = String((await db.extended('SELECT count(*) AS n FROM generate_series(1, $1::int)', [1000]))[0].n);
        // Proof that `extended` is the extended protocol: PostgreSQL refuses two statements in one Parse.
        seen.two_in_one_parse = await refusal(() => db.extended('SELECT 1; SELECT 2', []));
        seen.refused_simple = await refusal(() => db.simple('DROP TABLE ' + settings.table));
        seen.after_simple = (await db.simple('SELECT 7 AS n'))[0].n;
        seen.refused_extended = await refusal(() => db.extended('DROP TABLE ' + settings.table, []));
        seen.after_extended = String((await db.extended('SELECT $1::int AS n', [8]))[0].n);
        return seen;
    } finally {
        await db.close();
    }
}

main().then(
    (seen) => console.log(JSON.stringify(seen)),
    (error) => console.log(JSON.stringify({ ok: false, error: describe(error) })));
