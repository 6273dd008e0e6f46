# CMake generated Testfile for 
# Source directory: /work/main/cpp-tests
# Build directory: /work/main/build-debug/cpp-tests
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
include("/work/main/build-debug/cpp-tests/xxnet_cpp_tests[1]_include.cmake")
include("/work/main/build-debug/cpp-tests/xxnet_test_env.cmake")
add_test(header_c11 "/work/main/build-debug/cpp-tests/header_c11")
set_tests_properties(header_c11 PROPERTIES  ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1" LABELS "c" TIMEOUT "30" _BACKTRACE_TRIPLES "/work/main/cpp-tests/CMakeLists.txt;53;add_test;/work/main/cpp-tests/CMakeLists.txt;0;")
add_test(demo "/work/main/build-debug/examples/xxnet_demo")
set_tests_properties(demo PROPERTIES  ENVIRONMENT "ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1;UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1" LABELS "example" TIMEOUT "60" _BACKTRACE_TRIPLES "/work/main/cpp-tests/CMakeLists.txt;60;add_test;/work/main/cpp-tests/CMakeLists.txt;0;")
