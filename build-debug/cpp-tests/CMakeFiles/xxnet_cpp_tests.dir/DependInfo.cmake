
# Consider dependencies only in project.
set(CMAKE_DEPENDS_IN_PROJECT_ONLY OFF)

# The set of languages for which implicit dependencies are needed:
set(CMAKE_DEPENDS_LANGUAGES
  )

# The set of dependency files which are needed:
set(CMAKE_DEPENDS_DEPENDENCY_FILES
  "/work/main/cpp-tests/test_args.cpp" "cpp-tests/CMakeFiles/xxnet_cpp_tests.dir/test_args.cpp.o" "gcc" "cpp-tests/CMakeFiles/xxnet_cpp_tests.dir/test_args.cpp.o.d"
  "/work/main/cpp-tests/test_connect.cpp" "cpp-tests/CMakeFiles/xxnet_cpp_tests.dir/test_connect.cpp.o" "gcc" "cpp-tests/CMakeFiles/xxnet_cpp_tests.dir/test_connect.cpp.o.d"
  "/work/main/cpp-tests/test_lifecycle.cpp" "cpp-tests/CMakeFiles/xxnet_cpp_tests.dir/test_lifecycle.cpp.o" "gcc" "cpp-tests/CMakeFiles/xxnet_cpp_tests.dir/test_lifecycle.cpp.o.d"
  "/work/main/cpp-tests/test_limits.cpp" "cpp-tests/CMakeFiles/xxnet_cpp_tests.dir/test_limits.cpp.o" "gcc" "cpp-tests/CMakeFiles/xxnet_cpp_tests.dir/test_limits.cpp.o.d"
  "/work/main/cpp-tests/test_listen.cpp" "cpp-tests/CMakeFiles/xxnet_cpp_tests.dir/test_listen.cpp.o" "gcc" "cpp-tests/CMakeFiles/xxnet_cpp_tests.dir/test_listen.cpp.o.d"
  "/work/main/cpp-tests/test_protocol.cpp" "cpp-tests/CMakeFiles/xxnet_cpp_tests.dir/test_protocol.cpp.o" "gcc" "cpp-tests/CMakeFiles/xxnet_cpp_tests.dir/test_protocol.cpp.o.d"
  "/work/main/cpp-tests/test_two_process.cpp" "cpp-tests/CMakeFiles/xxnet_cpp_tests.dir/test_two_process.cpp.o" "gcc" "cpp-tests/CMakeFiles/xxnet_cpp_tests.dir/test_two_process.cpp.o.d"
  )

# Targets to which this target links.
set(CMAKE_TARGET_LINKED_INFO_FILES
  )

# Fortran module output directory.
set(CMAKE_Fortran_TARGET_MODULE_DIR "")
