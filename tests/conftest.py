pytest_plugins = ["gpu_switch", "pytester"]
