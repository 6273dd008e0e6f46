file(REMOVE_RECURSE
  "/work/main/target/release/libxxnet.so"
  "CMakeFiles/xxnet_cargo"
)

# Per-language clean rules from dependency scanning.
foreach(lang )
  include(CMakeFiles/xxnet_cargo.dir/cmake_clean_${lang}.cmake OPTIONAL)
endforeach()
