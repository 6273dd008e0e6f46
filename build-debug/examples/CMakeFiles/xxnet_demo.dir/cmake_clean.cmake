file(REMOVE_RECURSE
  "CMakeFiles/xxnet_demo.dir/demo.cpp.o"
  "CMakeFiles/xxnet_demo.dir/demo.cpp.o.d"
  "xxnet_demo"
  "xxnet_demo.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang CXX)
  include(CMakeFiles/xxnet_demo.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
