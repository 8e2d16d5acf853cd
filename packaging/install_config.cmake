# Install step of the package (packaging/package.cmake): /etc/pgrail/pgrail.yaml from
# config/pgrail.yaml. The repository's copy names its paths relative to config/ and its example
# values are placeholders; installed, the paths are relative to /etc/pgrail, the audit log goes
# to the file packaging/logrotate/pgrail rotates, and the placeholders become comments.
# Each rewritten line must be found exactly once: when config/pgrail.yaml changes them, the
# package build fails here instead of shipping a config that `pgrail serve` refuses.
# In: PGRAIL_CONFIG_SOURCE, PGRAIL_CONFIG_DESTINATION.
file(READ "${PGRAIL_CONFIG_SOURCE}" text)

function(pgrail_rewrite pattern replacement what)
  # Count the matches by marking them (a list of matches would split at their semicolons).
  set(marker "@PGRAIL_REWRITE@")
  string(REGEX REPLACE "${pattern}" "${marker}" marked "${text}")
  string(REPLACE "${marker}" "" unmarked "${marked}")
  string(LENGTH "${marked}" marked_length)
  string(LENGTH "${unmarked}" unmarked_length)
  string(LENGTH "${marker}" marker_length)
  math(EXPR count "(${marked_length} - ${unmarked_length}) / ${marker_length}")
  if(NOT count EQUAL 1)
    message(FATAL_ERROR "packaging/install_config.cmake: expected one line of config/pgrail.yaml matching "
                        "'${pattern}' (${what}), found ${count}: update the rewrite")
  endif()
  string(REGEX REPLACE "${pattern}" "${replacement}" rewritten "${text}")
  set(text "${rewritten}" PARENT_SCOPE)
endfunction()

pgrail_rewrite("\npolicy: \\.\\./policies/default\\.yaml[^\n]*" "\npolicy: policies/default.yaml" "the policy")
pgrail_rewrite("\n  file: \"-\"[^\n]*"
               "\n  file: /var/log/pgrail/audit.jsonl   # rotated by /etc/logrotate.d/pgrail" "the audit file")
# No migrations ship with the package: the directory and the migrator's role are the operator's.
pgrail_rewrite("\n  dir: \\.\\./migrations[^\n]*"
               "\n  # dir: migrations          # e.g. /etc/pgrail/migrations: <version>_<name>.up.sql + .down.sql"
               "migrations.dir")
pgrail_rewrite("\n  migrator: (\"[^\"\n]*\")[^\n]*" "\n  # migrator: \\1" "migrations.migrator")

string(REGEX REPLACE "^# pgrail serve --config config/pgrail.yaml\n" "" text "${text}")
set(header "# /etc/pgrail/pgrail.yaml, from the pgrail package (config/pgrail.yaml; docs/operations.md \"Packages\").
# Relative paths are resolved against /etc/pgrail. Set upstream.host/port to your server, then:
#   systemctl enable --now pgrail      # journalctl -u pgrail; systemctl reload pgrail (SIGHUP)
")
file(WRITE "${PGRAIL_CONFIG_DESTINATION}" "${header}${text}")
message(STATUS "Installing: ${PGRAIL_CONFIG_DESTINATION} (from ${PGRAIL_CONFIG_SOURCE})")
