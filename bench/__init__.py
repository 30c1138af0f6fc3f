"""`make bench`: throughput, latency and memory of streamapp's pipelines, each as a ratio to a reference
measured in the same run (`python -m bench --help`)."""
