# ctest `install_outside_project`: installs this build into a temporary
# prefix and builds + runs tests/install (a separate project) against the
# installed copy, through find_package(xxnet) and through pkg-config; see
# tests/install/run.sh. Included at the end of the root CMakeLists.txt
# (after cmake/xxnet_install.cmake, with testing enabled).
include_guard(GLOBAL)
if(NOT XXNET_BUILD_TESTS)
  return()
endif()

add_test(NAME install_outside_project
  COMMAND bash "${CMAKE_CURRENT_LIST_DIR}/../tests/install/run.sh"
          "${CMAKE_BINARY_DIR}" "${CMAKE_COMMAND}" "${CMAKE_CXX_COMPILER}")
# Configuring and building a second project takes a few seconds; the
# outside program itself stops after 10 s at most.
set_tests_properties(install_outside_project PROPERTIES TIMEOUT 300 LABELS install)
