# Empty dependencies file for xxnet_cpp_tests.
# This may be replaced when dependencies are built.
