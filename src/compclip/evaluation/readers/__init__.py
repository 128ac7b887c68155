"""Readers for the released benchmark files, each in its own module. `READERS` maps the CLI's benchmark
names to them; every reader takes (data path, images dir) and returns a `Loaded`."""
