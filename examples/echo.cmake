# Echo server and client written with the C++ wrapper (include/xxnet.hpp),
# and the ctest `echo_example` that runs them together (examples/run_echo.sh).
# Included from examples/CMakeLists.txt:
#   include(echo.cmake)
include_guard(GLOBAL)

add_executable(xxnet_echo_server "${CMAKE_CURRENT_LIST_DIR}/echo_server.cpp")
target_link_libraries(xxnet_echo_server PRIVATE xxnet::xxnet xxnet_cxx_flags)
add_executable(xxnet_echo_client "${CMAKE_CURRENT_LIST_DIR}/echo_client.cpp")
target_link_libraries(xxnet_echo_client PRIVATE xxnet::xxnet xxnet_cxx_flags)

if(XXNET_BUILD_TESTS)
  # examples/ is added before the root CMakeLists.txt calls enable_testing();
  # enabling it here too makes this directory's tests part of ctest.
  enable_testing()
  add_test(NAME echo_example
    COMMAND bash "${CMAKE_CURRENT_LIST_DIR}/run_echo.sh"
            "$<TARGET_FILE:xxnet_echo_server>" "$<TARGET_FILE:xxnet_echo_client>")
  set_tests_properties(echo_example PROPERTIES TIMEOUT 180 LABELS example)
  if(XXNET_SANITIZE)
    set_tests_properties(echo_example PROPERTIES ENVIRONMENT
      "ASAN_OPTIONS=detect_leaks=1:halt_on_error=1;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
  endif()
endif()
