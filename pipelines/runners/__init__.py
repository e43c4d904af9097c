"""Where the pipeline runs: the local runner, Flink and Spark job servers, a local Flink cluster."""
