# Empty dependencies file for header_c11.
# This may be replaced when dependencies are built.
