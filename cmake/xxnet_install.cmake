# Install rules of xxnet: `cmake --install <build> --prefix <p>` puts
#
#   <p>/include/xxnet.h, <p>/include/xxnet.hpp
#   <p>/lib/libxxnet.so.<version>            the library cargo built (SONAME libxxnet.so.<major>)
#   <p>/lib/libxxnet.so.<major>              -> libxxnet.so.<version>   (what programs load)
#   <p>/lib/libxxnet.so                      -> libxxnet.so.<major>     (what the linker finds)
#   <p>/lib/cmake/xxnet/xxnetConfig.cmake, xxnetConfigVersion.cmake
#                                            find_package(xxnet) -> imported target xxnet::xxnet
#   <p>/lib/pkgconfig/xxnet.pc               pkg-config --cflags --libs xxnet
#
# ("lib" is CMAKE_INSTALL_LIBDIR of GNUInstallDirs: lib64 or a multiarch dir
# on some systems and prefixes.) Nothing here builds anything: install after
# `cmake --build`. Included at the end of the root CMakeLists.txt, which
# defines XXNET_LIBRARY (cargo's libxxnet.so) and XXNET_SONAME.
include_guard(GLOBAL)
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

if(NOT DEFINED XXNET_LIBRARY OR NOT DEFINED XXNET_SONAME)
  message(FATAL_ERROR "xxnet_install.cmake: include it after XXNET_LIBRARY and XXNET_SONAME are set")
endif()

# The version is the crate's (Cargo.toml): cargo builds the library and
# derives its SONAME from it. project(VERSION) should agree.
file(STRINGS "${CMAKE_CURRENT_LIST_DIR}/../Cargo.toml" _xxnet_cargo_version REGEX "^version *= *\"[^\"]+\"" LIMIT_COUNT 1)
if(_xxnet_cargo_version MATCHES "\"([0-9]+)\\.([0-9]+)\\.([0-9]+)[^\"]*\"")
  set(XXNET_INSTALL_VERSION "${CMAKE_MATCH_1}.${CMAKE_MATCH_2}.${CMAKE_MATCH_3}")
  set(XXNET_INSTALL_SOMAJOR "${CMAKE_MATCH_1}")
elseif(PROJECT_VERSION)
  set(XXNET_INSTALL_VERSION "${PROJECT_VERSION}")
  set(XXNET_INSTALL_SOMAJOR "${PROJECT_VERSION_MAJOR}")
else()
  set(XXNET_INSTALL_VERSION "0.1.0")
  set(XXNET_INSTALL_SOMAJOR "0")
endif()
if(PROJECT_VERSION AND NOT PROJECT_VERSION VERSION_EQUAL XXNET_INSTALL_VERSION)
  message(WARNING "xxnet: project(VERSION ${PROJECT_VERSION}) differs from Cargo.toml's ${XXNET_INSTALL_VERSION}; installing as ${XXNET_INSTALL_VERSION}")
endif()

set(XXNET_INSTALL_SONAME "${CMAKE_SHARED_LIBRARY_PREFIX}xxnet${CMAKE_SHARED_LIBRARY_SUFFIX}.${XXNET_INSTALL_SOMAJOR}")
if(NOT XXNET_INSTALL_SONAME STREQUAL XXNET_SONAME)
  message(FATAL_ERROR "xxnet: XXNET_SONAME is ${XXNET_SONAME} but version ${XXNET_INSTALL_VERSION} means ${XXNET_INSTALL_SONAME} (build.rs)")
endif()
set(XXNET_INSTALL_LINKNAME "${CMAKE_SHARED_LIBRARY_PREFIX}xxnet${CMAKE_SHARED_LIBRARY_SUFFIX}")
set(XXNET_INSTALL_REALNAME "${XXNET_INSTALL_LINKNAME}.${XXNET_INSTALL_VERSION}")

file(STRINGS "${CMAKE_CURRENT_LIST_DIR}/../include/xxnet.h" _xxnet_abi REGEX "^#define XXNET_ABI_VERSION [0-9]+" LIMIT_COUNT 1)
string(REGEX REPLACE "^#define XXNET_ABI_VERSION ([0-9]+).*" "\\1" XXNET_INSTALL_ABI "${_xxnet_abi}")

set(XXNET_INSTALL_INCLUDEDIR "${CMAKE_INSTALL_INCLUDEDIR}")
set(XXNET_INSTALL_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
set(XXNET_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/xxnet")
set(_xxnet_stage "${CMAKE_CURRENT_BINARY_DIR}/xxnet-install")

# Headers.
install(FILES
  "${CMAKE_CURRENT_LIST_DIR}/../include/xxnet.h"
  "${CMAKE_CURRENT_LIST_DIR}/../include/xxnet.hpp"
  DESTINATION "${XXNET_INSTALL_INCLUDEDIR}"
  COMPONENT xxnet_development)

# The library under its real name, and the two symlinks. The links are made
# in the build tree now and installed as links (install(FILES) keeps a
# symlink a symlink), so they land in install_manifest.txt and honour DESTDIR.
install(FILES "${XXNET_LIBRARY}"
  DESTINATION "${XXNET_INSTALL_LIBDIR}"
  RENAME "${XXNET_INSTALL_REALNAME}"
  PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE
  COMPONENT xxnet_runtime)
file(MAKE_DIRECTORY "${_xxnet_stage}")
file(CREATE_LINK "${XXNET_INSTALL_REALNAME}" "${_xxnet_stage}/${XXNET_INSTALL_SONAME}" SYMBOLIC)
file(CREATE_LINK "${XXNET_INSTALL_SONAME}" "${_xxnet_stage}/${XXNET_INSTALL_LINKNAME}" SYMBOLIC)
install(FILES "${_xxnet_stage}/${XXNET_INSTALL_SONAME}"
  DESTINATION "${XXNET_INSTALL_LIBDIR}"
  COMPONENT xxnet_runtime)
install(FILES "${_xxnet_stage}/${XXNET_INSTALL_LINKNAME}"
  DESTINATION "${XXNET_INSTALL_LIBDIR}"
  COMPONENT xxnet_development)

# CMake package: relocatable (paths relative to the installed config file).
configure_package_config_file(
  "${CMAKE_CURRENT_LIST_DIR}/xxnetConfig.cmake.in"
  "${_xxnet_stage}/xxnetConfig.cmake"
  INSTALL_DESTINATION "${XXNET_INSTALL_CMAKEDIR}"
  PATH_VARS XXNET_INSTALL_INCLUDEDIR XXNET_INSTALL_LIBDIR)
# The SONAME only changes with the major version: any 0.x.y satisfies a request for 0.1.
write_basic_package_version_file(
  "${_xxnet_stage}/xxnetConfigVersion.cmake"
  VERSION "${XXNET_INSTALL_VERSION}"
  COMPATIBILITY SameMajorVersion)
install(FILES "${_xxnet_stage}/xxnetConfig.cmake" "${_xxnet_stage}/xxnetConfigVersion.cmake"
  DESTINATION "${XXNET_INSTALL_CMAKEDIR}"
  COMPONENT xxnet_development)

# pkg-config: written at install time, when the prefix (`--prefix`) is known;
# DESTDIR is not part of it, as usual for staged installs.
install(CODE "
  set(XXNET_PC_PREFIX \"\${CMAKE_INSTALL_PREFIX}\")
  set(XXNET_PC_LIBDIR \"${XXNET_INSTALL_LIBDIR}\")
  set(XXNET_PC_INCLUDEDIR \"${XXNET_INSTALL_INCLUDEDIR}\")
  set(XXNET_PC_VERSION \"${XXNET_INSTALL_VERSION}\")
  configure_file(\"${CMAKE_CURRENT_LIST_DIR}/xxnet.pc.in\" \"${_xxnet_stage}/xxnet.pc\" @ONLY)
" COMPONENT xxnet_development)
install(FILES "${_xxnet_stage}/xxnet.pc"
  DESTINATION "${XXNET_INSTALL_LIBDIR}/pkgconfig"
  COMPONENT xxnet_development)

unset(_xxnet_cargo_version)
unset(_xxnet_abi)
unset(_xxnet_stage)
