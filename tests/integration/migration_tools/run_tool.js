// Runs a migration tool from npm through pgrail, as its users run it: up, down, up again.
// Usage: node run_tool.js <node_modules dir> <tool: node-pg-migrate|knex> <database url> <migrations dir> <step>
// step: up | down. Prints one JSON line: {"ok": true} or {"ok": false, "error": ..., "code": SQLSTATE}.
'use strict';
const path = require('path');
const [modules, tool, url, dir, step] = process.argv.slice(2);
const load = (name) => require(path.join(modules, name));

async function nodePgMigrate() {
    const { runner } = load('node-pg-migrate');
    // Its defaults: the pgmigrations table, a session advisory lock, one transaction per run.
    await runner({ databaseUrl: url, dir, direction: step, count: step === 'up' ? Infinity : 1,
                   migrationsTable: 'pgmigrations', log: () => {}, verbose: false, checkOrder: true });
}

async function knexMigrate() {
    const knex = load('knex')({ client: 'pg', connection: url, migrations: { directory: dir },
                                pool: { min: 1, max: 1 } });
    try {
        // Its defaults: knex_migrations and knex_migrations_lock, a transaction per migration.
        if (step === 'up') await knex.migrate.latest();
        else await knex.migrate.rollback();
    } finally {
        await knex.destroy();
    }
}

(tool === 'knex' ? knexMigrate() : nodePgMigrate()).then(
    () => console.log(JSON.stringify({ ok: true })),
    (error) => {
        console.log(JSON.stringify({ ok: false, error: String(error && error.message || error), code: error && error.code }));
    });
