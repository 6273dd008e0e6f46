# Tests of include/xxnet.hpp (the C++17 wrapper), GoogleTest, one ctest per
# TEST() (names Wrapper.*, label cpp). Included from cpp-tests/CMakeLists.txt:
#   include(wrapper.cmake)
include_guard(GLOBAL)
if(NOT TARGET GTest::gtest)
  find_package(GTest REQUIRED)
endif()
include(GoogleTest)

add_executable(xxnet_wrapper_tests "${CMAKE_CURRENT_LIST_DIR}/test_wrapper.cpp")
target_link_libraries(xxnet_wrapper_tests PRIVATE
  xxnet::xxnet xxnet_cxx_flags GTest::gtest GTest::gtest_main Threads::Threads)
# The wrapper promises C++17 and a clean build under stricter warnings too.
target_compile_features(xxnet_wrapper_tests PRIVATE cxx_std_17)
target_compile_options(xxnet_wrapper_tests PRIVATE -Wpedantic -Wconversion -Wsign-conversion -Wold-style-cast)

gtest_discover_tests(xxnet_wrapper_tests
  DISCOVERY_MODE PRE_TEST
  DISCOVERY_TIMEOUT 30
  PROPERTIES TIMEOUT 120 LABELS cpp
  TEST_LIST XXNET_WRAPPER_TESTS)

# Same sanitizer environment as the other C++ tests (see cpp-tests/CMakeLists.txt),
# applied after discovery because gtest_discover_tests cannot pass a list-valued ENVIRONMENT.
if(XXNET_SANITIZE)
  set(_xxnet_wrapper_env
    "ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
    "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1")
  set(_xxnet_wrapper_env_script "${CMAKE_CURRENT_BINARY_DIR}/xxnet_wrapper_test_env.cmake")
  file(WRITE "${_xxnet_wrapper_env_script}"
    "foreach(t IN LISTS XXNET_WRAPPER_TESTS)\n  set_tests_properties(\"\${t}\" PROPERTIES ENVIRONMENT \"${_xxnet_wrapper_env}\")\nendforeach()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${_xxnet_wrapper_env_script}")
  unset(_xxnet_wrapper_env)
  unset(_xxnet_wrapper_env_script)
endif()
