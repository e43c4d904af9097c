"""Pipeline assembly: the config, the plan built from it, the Beam graph, the driver, runners and the command line."""
