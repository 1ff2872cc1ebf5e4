"""The restoration engine, independent of napari: data layout, operators, networks, the loop, presets."""
