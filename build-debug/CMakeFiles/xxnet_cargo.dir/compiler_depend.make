# Empty custom commands generated dependencies file for xxnet_cargo.
# This may be replaced when dependencies are built.
