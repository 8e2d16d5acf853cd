// Built-in functions whose effects reach beyond the database a statement runs in.
#pragma once

#include <array>
#include <string_view>

namespace pgrail::sql {

// They read or write server files, reach other servers, signal backends or change the server's
// state (configuration, WAL, replication), or run SQL later or elsewhere, past the session pgrail
// reads: pg_cron's jobs (its schema is always `cron`) and pg_background's workers. The policy
// denies them to every rule unless a rule lifts one (denied_functions); pgrail never runs them in
// a scratch copy on an agent's word (migrations/scratch_guard.hpp). A trailing * matches any name
// with that prefix; a qualified entry matches that schema's function only.
// clang-format off
inline constexpr std::array<std::string_view, 54> functions_reaching_outside = {
    "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_ls_logdir", "pg_ls_waldir",
    "pg_ls_tmpdir", "pg_ls_archive_statusdir", "pg_ls_logicalsnapdir", "pg_ls_logicalmapdir",
    "pg_ls_replslotdir", "lo_import", "lo_export", "dblink*", "pg_terminate_backend", "pg_cancel_backend",
    "pg_reload_conf", "pg_rotate_logfile", "pg_promote", "pg_switch_wal", "pg_create_restore_point",
    "pg_backup_start", "pg_backup_stop", "pg_create_physical_replication_slot",
    "pg_create_logical_replication_slot", "pg_drop_replication_slot", "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot", "pg_replication_slot_advance", "pg_logical_emit_message",
    "pg_file_write", "pg_file_rename", "pg_file_unlink", "pg_file_sync", "cron.schedule",
    "cron.schedule_in_database", "cron.alter_job", "pg_background_launch",
    // (helper 67) pg_prewarm's: a server file, and a background worker that outlives the session
    "autoprewarm_start_worker", "autoprewarm_dump_now",
    // the server's state and files, for a role granted them (superusers and EXECUTE grants only)
    "pg_read_file_old", "pg_rotate_logfile_old", "pg_logdir_ls", "pg_import_system_collations",
    "pg_stop_making_pinned_objects", "pg_stat_reset*", "pg_stat_statements_reset", "pg_replication_origin_*",
    "pg_log_backend_memory_contexts", "pg_wal_replay_pause", "pg_wal_replay_resume",
    // pg_surgery's and pg_visibility's: they destroy or rewrite data past every check
    "heap_force_kill", "heap_force_freeze", "pg_truncate_visibility_map"};
// clang-format on

}  // namespace pgrail::sql
