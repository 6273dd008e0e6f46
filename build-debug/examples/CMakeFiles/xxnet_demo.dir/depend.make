# Empty dependencies file for xxnet_demo.
# This may be replaced when dependencies are built.
