file(REMOVE_RECURSE
  "CMakeFiles/xxnet_node.dir/xxnet_node.cpp.o"
  "CMakeFiles/xxnet_node.dir/xxnet_node.cpp.o.d"
  "xxnet_node"
  "xxnet_node.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang CXX)
  include(CMakeFiles/xxnet_node.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
