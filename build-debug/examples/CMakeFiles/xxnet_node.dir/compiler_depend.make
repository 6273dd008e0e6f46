# Empty compiler generated dependencies file for xxnet_node.
# This may be replaced when dependencies are built.
