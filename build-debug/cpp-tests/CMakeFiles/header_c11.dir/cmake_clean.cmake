file(REMOVE_RECURSE
  "CMakeFiles/header_c11.dir/header_c11.c.o"
  "CMakeFiles/header_c11.dir/header_c11.c.o.d"
  "header_c11"
  "header_c11.pdb"
)

# Per-language clean rules from dependency scanning.
foreach(lang C)
  include(CMakeFiles/header_c11.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
