file(REMOVE_RECURSE
  "CMakeFiles/xxnet_cpp_tests.dir/test_args.cpp.o"
  "CMakeFiles/xxnet_cpp_tests.dir/test_args.cpp.o.d"
  "CMakeFiles/xxnet_cpp_tests.dir/test_connect.cpp.o"
  "CMakeFiles/xxnet_cpp_tests.dir/test_connect.cpp.o.d"
  "CMakeFiles/xxnet_cpp_tests.dir/test_lifecycle.cpp.o"
  "CMakeFiles/xxnet_cpp_tests.dir/test_lifecycle.cpp.o.d"
  "CMakeFiles/xxnet_cpp_tests.dir/test_limits.cpp.o"
  "CMakeFiles/xxnet_cpp_tests.dir/test_limits.cpp.o.d"
  "CMakeFiles/xxnet_cpp_tests.dir/test_listen.cpp.o"
  "CMakeFiles/xxnet_cpp_tests.dir/test_listen.cpp.o.d"
  "CMakeFiles/xxnet_cpp_tests.dir/test_protocol.cpp.o"
  "CMakeFiles/xxnet_cpp_tests.dir/test_protocol.cpp.o.d"
  "CMakeFiles/xxnet_cpp_tests.dir/test_two_process.cpp.o"
  "CMakeFiles/xxnet_cpp_tests.dir/test_two_process.cpp.o.d"
  "xxnet_cpp_tests"
  "xxnet_cpp_tests.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang CXX)
  include(CMakeFiles/xxnet_cpp_tests.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
