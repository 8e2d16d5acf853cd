# The Debian package (issue #20): `cpack -G DEB` in a build directory after building pgrail, or
# scripts/package_test.sh BUILD_DIR, which also installs, smoke-tests and purges it.
# Only install rules and CPack variables: nothing here adds to or changes `cmake --build`.
#
# Layout, shared with packaging/pgrail.service, packaging/logrotate/pgrail and docker/Dockerfile:
#   /usr/bin/pgrail                         the binary (stripped)
#   /etc/pgrail/pgrail.yaml                 config/pgrail.yaml, paths made relative to /etc/pgrail (conffile)
#   /etc/pgrail/policies/*.yaml             policies/ (conffiles)
#   /lib/systemd/system/pgrail.service      the unit (not enabled or started by the package)
#   /etc/logrotate.d/pgrail                 rotation of /var/log/pgrail/audit.jsonl (conffile)
#   /usr/share/doc/pgrail/                  README.md and docs/
#   /var/log/pgrail, /var/lib/pgrail        made by postinst for the `pgrail` system user

# Absolute destinations (a package installs to /, whatever CMAKE_INSTALL_PREFIX says), staged
# under DESTDIR by CPack (CPACK_SET_DESTDIR below), never written to the build machine's /etc.
# `cpack` runs the install step; without this it would first build every target (tests,
# benchmarks) through `preinstall`. The package needs only pgrail, which the caller builds.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

install(TARGETS pgrail RUNTIME DESTINATION /usr/bin)
# config/pgrail.yaml documents every key with paths relative to the repository; the installed
# copy gets paths relative to /etc/pgrail and the audit file logrotate expects
# (packaging/install_config.cmake fails the install when the lines it rewrites have changed).
install(CODE "set(PGRAIL_CONFIG_SOURCE \"${PROJECT_SOURCE_DIR}/config/pgrail.yaml\")
              set(PGRAIL_CONFIG_DESTINATION \"\$ENV{DESTDIR}/etc/pgrail/pgrail.yaml\")
              include(\"${PROJECT_SOURCE_DIR}/packaging/install_config.cmake\")")
file(GLOB pgrail_policies CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/policies/*.yaml)
install(FILES ${pgrail_policies} DESTINATION /etc/pgrail/policies)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/pgrail.service DESTINATION /lib/systemd/system)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/logrotate/pgrail DESTINATION /etc/logrotate.d)
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION /usr/share/doc/pgrail)
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs DESTINATION /usr/share/doc/pgrail)

# dpkg keeps an operator's edits of these across upgrades (and asks when both sides changed).
set(pgrail_conffiles "/etc/pgrail/pgrail.yaml\n/etc/logrotate.d/pgrail\n")
foreach(policy IN LISTS pgrail_policies)
  get_filename_component(policy_name ${policy} NAME)
  string(APPEND pgrail_conffiles "/etc/pgrail/policies/${policy_name}\n")
endforeach()
file(WRITE ${PROJECT_BINARY_DIR}/packaging/debian/conffiles "${pgrail_conffiles}")
foreach(script postinst prerm postrm)
  configure_file(${PROJECT_SOURCE_DIR}/packaging/debian/${script} ${PROJECT_BINARY_DIR}/packaging/debian/${script}
                 COPYONLY)
endforeach()

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME pgrail)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "pgrail maintainers <pgrail@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "PostgreSQL wire-protocol proxy that enforces a policy for AI agents")
set(CPACK_PACKAGE_DESCRIPTION
    "pgrail stands between clients (AI agents) and a PostgreSQL server. It reads every statement,
refuses what its policy forbids (schema changes outside registered migrations, server files,
unbounded writes, sensitive columns), audits every decision as a JSON line, and runs migrations
in-band. The package installs the binary, a default configuration and policy in /etc/pgrail, a
hardened systemd unit (not started: set the server's address first) and a logrotate rule.")
set(CPACK_PACKAGE_FILE_NAME "pgrail_${PROJECT_VERSION}_amd64")
set(CPACK_STRIP_FILES ON)
set(CPACK_SET_DESTDIR ON)
# Else CPack stages (and ships, empty) the build's default prefix, /usr/local.
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_PACKAGE_SECTION database)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/pgrail/pgrail")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
# The shared libraries' packages come from dpkg-shlibdeps (dpkg-dev); adduser for postinst;
# pg_dump 15 for `pgrail migrate verify` (as docker/Dockerfile's runtime stage).
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "postgresql-client-15, logrotate")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${PROJECT_BINARY_DIR}/packaging/debian/conffiles ${PROJECT_BINARY_DIR}/packaging/debian/postinst
    ${PROJECT_BINARY_DIR}/packaging/debian/prerm ${PROJECT_BINARY_DIR}/packaging/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
